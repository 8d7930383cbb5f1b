//! Synthetic galleries for the CUDA tests and bench: templates in vision's
//! compact form, made from counts directly (no images), reproducible from
//! a seed. Also used by `benches/cuda.rs` (through `#[path]`).

#![allow(dead_code)] // each user takes its own subset

use vision::lbph::{LbphParams, Template};

/// xorshift64*: small, fast, reproducible.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A template from exact per-bin counts (default layout: 8 × 8 × 256),
/// with the overflow list for counts of 255 and more, through vision's own
/// parser (so it is a template vision could have made).
pub fn from_counts(cell_pixels: u32, counts: &[u32]) -> Template {
    let p = LbphParams::default();
    let mut bytes = b"KVT1".to_vec();
    bytes.extend([p.radius, p.neighbors, p.grid_x, p.grid_y].map(|v| v as u8));
    bytes.extend(cell_pixels.to_le_bytes());
    let overflow: Vec<(u32, u32)> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c >= 255)
        .map(|(b, &c)| (b as u32, c))
        .collect();
    bytes.extend((overflow.len() as u32).to_le_bytes());
    bytes.extend(counts.iter().map(|&c| c.min(255) as u8));
    for (b, c) in overflow {
        bytes.extend(b.to_le_bytes());
        bytes.extend(c.to_le_bytes());
    }
    Template::from_bytes(&bytes).expect("a well-formed template")
}

const BINS: usize = 256;
const CELLS: usize = 64;

/// A person's "face": per cell, a distribution over bins that favours a
/// few dozen (as LBP's uniform patterns dominate real faces).
pub struct Person {
    /// Per cell, the cumulative weights of the bins.
    cumulative: Vec<Vec<u32>>,
}

impl Person {
    pub fn new(rng: &mut Rng) -> Self {
        let cumulative = (0..CELLS)
            .map(|_| {
                let mut sum = 0;
                (0..BINS)
                    .map(|b| {
                        let base = if b < 58 { 40 } else { 2 };
                        sum += base + rng.below(60) as u32 * (rng.below(3) == 0) as u32;
                        sum
                    })
                    .collect()
            })
            .collect();
        Self { cumulative }
    }

    /// One view: `cell_pixels` pixels a cell drawn from the person's
    /// distribution (exact counts; 255 and more only for big cells).
    pub fn view(&self, rng: &mut Rng, cell_pixels: u32) -> Template {
        let mut counts = vec![0u32; BINS * CELLS];
        for (cell, cum) in self.cumulative.iter().enumerate() {
            let total = cum[BINS - 1];
            for _ in 0..cell_pixels {
                let x = rng.below(total as u64) as u32;
                counts[cell * BINS + cum.partition_point(|&c| c <= x)] += 1;
            }
        }
        from_counts(cell_pixels, &counts)
    }
}

/// A template whose cells put most of their pixels in one bin: with
/// `cell_pixels` ≥ 255 that bin overflows the byte.
pub fn peaked(rng: &mut Rng, cell_pixels: u32) -> Template {
    let mut counts = vec![0u32; BINS * CELLS];
    for cell in 0..CELLS {
        let peak = cell_pixels * 3 / 4;
        counts[cell * BINS + rng.below(BINS as u64) as usize] += peak;
        for _ in 0..cell_pixels - peak {
            counts[cell * BINS + rng.below(BINS as u64) as usize] += 1;
        }
    }
    from_counts(cell_pixels, &counts)
}

/// Kiosk crops are 92 × 112: LBP cells of 11 × 13 pixels.
pub const CROP_CELL_PIXELS: u32 = 143;

/// A gallery of `size` templates: people with 1 to `max_views` views each,
/// labels 0, 1, 2, … in enrolment order; and one probe per person (a fresh
/// view).
pub fn gallery(
    seed: u64,
    size: usize,
    max_views: usize,
) -> (Vec<(i32, Vec<Template>)>, Vec<Template>) {
    let mut rng = Rng::new(seed);
    let (mut people, mut probes, mut made) = (Vec::new(), Vec::new(), 0);
    while made < size {
        let person = Person::new(&mut rng);
        let views = (1 + rng.below(max_views as u64) as usize).min(size - made);
        let templates = (0..views)
            .map(|_| person.view(&mut rng, CROP_CELL_PIXELS))
            .collect();
        probes.push(person.view(&mut rng, CROP_CELL_PIXELS));
        people.push((people.len() as i32, templates));
        made += views;
    }
    (people, probes)
}
