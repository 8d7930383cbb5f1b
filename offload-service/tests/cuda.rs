//! The CUDA backend against the CPU backend: same labels, distances within
//! 1e-5 relative (the kernel is meant to be bit-exact; the largest
//! difference seen is printed), on synthetic galleries whose sizes are no
//! multiple of any tile and on ORL; top-k, removal, replacement, templates
//! the host scores (overflow, other cell sizes), ties, out of memory.
//!
//! Without a GPU (or driver, or NVRTC) each test prints `SKIPPED: no CUDA
//! device (why)` to stderr and passes. With `KUBEVISION_REQUIRE_GPU=1` a
//! missing GPU fails instead (what a GPU session sets, so that a skip
//! cannot pass for a result):
//!
//! ```sh
//! KUBEVISION_REQUIRE_GPU=1 cargo test --release -p kubevision-offload --features cuda --test cuda -- --nocapture
//! ```

#![cfg(feature = "cuda")]

mod common;
mod synthetic;

use kubevision_offload::backend::{
    self, BackendChoice, BackendError, CpuBackend, CudaBackend, CudaOptions, MatchBackend,
};
use synthetic::{Person, Rng};
use vision::lbph::{LbphParams, Match, Template};

fn gpu(test: &str, options: CudaOptions) -> Option<CudaBackend> {
    match CudaBackend::with_options(LbphParams::default(), options) {
        Ok(b) => {
            eprintln!("{test}: on {}", b.device_info());
            Some(b)
        }
        Err(BackendError::Unavailable { reason, .. }) => {
            if std::env::var_os("KUBEVISION_REQUIRE_GPU").is_some_and(|v| v == "1") {
                panic!("{test}: KUBEVISION_REQUIRE_GPU=1 but no CUDA device: {reason}");
            }
            // Straight to the process's stderr, past the test harness's
            // capture, so that the skip shows in a plain `cargo test`.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: no CUDA device ({reason}) [{test}]"
            );
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

macro_rules! gpu_or_skip {
    ($test:expr) => {
        gpu_or_skip!($test, CudaOptions::default())
    };
    ($test:expr, $options:expr) => {
        match gpu($test, $options) {
            Some(g) => g,
            None => return,
        }
    };
}

/// Both backends, filled alike.
fn both(gpu: CudaBackend, people: &[(i32, Vec<Template>)]) -> (CpuBackend, CudaBackend) {
    let cpu = CpuBackend::new(LbphParams::default());
    for (label, templates) in people {
        cpu.update_label(*label, templates.clone(), false).unwrap();
        gpu.update_label(*label, templates.clone(), false).unwrap();
    }
    assert_eq!(gpu.template_count(), cpu.template_count());
    (cpu, gpu)
}

fn close(a: f64, b: f64) -> bool {
    a == b || (a - b).abs() <= 1e-5 * a.abs().max(b.abs())
}

/// Same labels in the same order, distances within 1e-5 relative; returns
/// the largest relative difference.
fn same(cpu: &[Vec<Match>], gpu: &[Vec<Match>], what: &str) -> f64 {
    assert_eq!(cpu.len(), gpu.len(), "{what}: probes");
    let mut worst = 0.0f64;
    for (q, (c, g)) in cpu.iter().zip(gpu).enumerate() {
        let labels = |m: &[Match]| m.iter().map(|m| m.label).collect::<Vec<_>>();
        assert_eq!(
            labels(g),
            labels(c),
            "{what}: probe {q}: GPU {g:?} vs CPU {c:?}"
        );
        for (mc, mg) in c.iter().zip(g) {
            assert!(
                close(mc.distance, mg.distance),
                "{what}: probe {q}: {mg:?} vs {mc:?}"
            );
            if mc.distance != 0.0 {
                worst = worst.max((mc.distance - mg.distance).abs() / mc.distance);
            }
        }
    }
    worst
}

fn compare(cpu: &CpuBackend, gpu: &CudaBackend, probes: &[Template], what: &str) {
    let mut worst = 0.0f64;
    for k in [1, 3, 10] {
        for batch in [1, 5, 64, 70] {
            for chunk in probes.chunks(batch).take(3) {
                let c = cpu.search_batch(chunk, k).unwrap();
                let g = gpu.search_batch(chunk, k).unwrap();
                worst = worst.max(same(&c, &g, &format!("{what}, k {k}, batch {batch}")));
            }
        }
    }
    eprintln!("{what}: largest relative difference {worst:e}");
}

#[test]
fn random_galleries_of_untiled_sizes() {
    let _ = gpu_or_skip!("random_galleries_of_untiled_sizes");
    for (seed, size) in [(1, 1), (2, 37), (3, 1000), (4, 4099)] {
        let g = CudaBackend::new(LbphParams::default()).unwrap();
        let (people, mut probes) = synthetic::gallery(seed, size, 7);
        // Probes of other people too, and more than one launch's worth.
        let mut rng = Rng::new(seed + 100);
        while probes.len() < 150 {
            probes.push(Person::new(&mut rng).view(&mut rng, synthetic::CROP_CELL_PIXELS));
        }
        let (cpu, gpu) = both(g, &people);
        compare(&cpu, &gpu, &probes, &format!("{size} templates"));
        // Every probe at once (three launches).
        let c = cpu.search_batch(&probes, 2).unwrap();
        same(
            &c,
            &gpu.search_batch(&probes, 2).unwrap(),
            &format!("{size} templates, one batch of {}", probes.len()),
        );
        // Verification distances.
        for label in [0, people.len() as i32 / 2, people.len() as i32 - 1, 99_999] {
            let c = cpu.distances_to_label(&probes[..70], label).unwrap();
            let g = gpu.distances_to_label(&probes[..70], label).unwrap();
            for (a, b) in c.iter().zip(&g) {
                match (a, b) {
                    (Some(a), Some(b)) => assert!(close(*a, *b), "label {label}: {b} vs {a}"),
                    (None, None) => {}
                    _ => panic!("label {label}: {b:?} vs {a:?}"),
                }
            }
        }
    }
}

#[test]
fn orl_like_the_cpu() {
    let g = gpu_or_skip!("orl_like_the_cpu");
    let params = LbphParams::default();
    let face = |person: u32, photo: u32| {
        let image = vision::imageio::decode_gray(&common::orl_bytes(person, photo)).unwrap();
        Template::extract(&params, &image).unwrap()
    };
    let people: Vec<(i32, Vec<Template>)> = (1..=40)
        .map(|p| (p as i32, (1..=5).map(|photo| face(p, photo)).collect()))
        .collect();
    let probes: Vec<Template> = (1..=40)
        .flat_map(|p| (6..=10).map(move |photo| (p, photo)))
        .map(|(p, ph)| face(p, ph))
        .collect();
    let (cpu, gpu) = both(g, &people);
    compare(&cpu, &gpu, &probes, "ORL");
    let c = cpu.search_batch(&probes, 1).unwrap();
    let g = gpu.search_batch(&probes, 1).unwrap();
    same(&c, &g, "ORL, all 200 probes");
    let right = |r: &[Vec<Match>]| {
        r.iter()
            .enumerate()
            .filter(|(i, m)| m[0].label == (i / 5 + 1) as i32)
            .count()
    };
    eprintln!(
        "ORL: {} of 200 right on the GPU, {} on the CPU",
        right(&g),
        right(&c)
    );
    assert_eq!(right(&g), right(&c));
    // Verification: every probe against its own person.
    for (i, probe) in probes.iter().enumerate() {
        let label = (i / 5 + 1) as i32;
        let c = cpu
            .distances_to_label(std::slice::from_ref(probe), label)
            .unwrap()[0]
            .unwrap();
        let g = gpu
            .distances_to_label(std::slice::from_ref(probe), label)
            .unwrap()[0]
            .unwrap();
        assert!(close(c, g), "probe {i}: {g} vs {c}");
    }
}

#[test]
fn removal_and_replacement_keep_step() {
    let g = gpu_or_skip!("removal_and_replacement_keep_step");
    let (people, probes) = synthetic::gallery(7, 300, 9);
    let (cpu, gpu) = both(g, &people);
    let last = people.len() as i32 - 1;
    let mut rng = Rng::new(77);
    type Step = Box<dyn Fn(&dyn MatchBackend)>;
    let steps: Vec<(&str, Step)> = vec![
        ("remove the first", Box::new(|b| b.remove_label(0))),
        (
            "remove a middle one",
            Box::new(move |b| b.remove_label(last / 2)),
        ),
        ("remove the last", Box::new(move |b| b.remove_label(last))),
        (
            "remove one that is not there",
            Box::new(|b| b.remove_label(123_456)),
        ),
        ("replace with fewer", {
            let t = vec![Person::new(&mut rng).view(&mut rng, 143)];
            Box::new(move |b| b.update_label(3, t.clone(), true).unwrap())
        }),
        ("replace with more", {
            let p = Person::new(&mut rng);
            let t: Vec<Template> = (0..20).map(|_| p.view(&mut rng, 143)).collect();
            Box::new(move |b| b.update_label(5, t.clone(), true).unwrap())
        }),
        ("append to one in the middle", {
            let t = vec![Person::new(&mut rng).view(&mut rng, 143)];
            Box::new(move |b| b.update_label(10, t.clone(), false).unwrap())
        }),
        ("a new one", {
            let t = vec![Person::new(&mut rng).view(&mut rng, 143)];
            Box::new(move |b| b.update_label(last + 1, t.clone(), false).unwrap())
        }),
        (
            "replace with nothing",
            Box::new(|b| b.update_label(6, Vec::new(), true).unwrap()),
        ),
    ];
    for (what, step) in steps {
        step(&cpu);
        step(&gpu);
        assert_eq!(gpu.template_count(), cpu.template_count(), "{what}");
        let c = cpu.search_batch(&probes, 5).unwrap();
        same(&c, &gpu.search_batch(&probes, 5).unwrap(), what);
    }
    // Everything removed, then filled again.
    for (label, _) in &people {
        cpu.remove_label(*label);
        gpu.remove_label(*label);
    }
    cpu.remove_label(last + 1);
    gpu.remove_label(last + 1);
    assert_eq!(gpu.template_count(), cpu.template_count());
    assert_eq!(gpu.template_count(), 0);
    assert!(gpu
        .search_batch(&probes[..3], 3)
        .unwrap()
        .iter()
        .all(|m| m.is_empty()));
    for (label, templates) in &people[..5] {
        cpu.update_label(*label, templates.clone(), false).unwrap();
        gpu.update_label(*label, templates.clone(), false).unwrap();
    }
    same(
        &cpu.search_batch(&probes, 3).unwrap(),
        &gpu.search_batch(&probes, 3).unwrap(),
        "refilled",
    );
}

#[test]
fn templates_the_host_scores() {
    let g = gpu_or_skip!("templates_the_host_scores");
    let mut rng = Rng::new(5);
    let (mut people, mut probes) = synthetic::gallery(8, 200, 5);
    // Overflow (big cells, one bin above 255) and other cell sizes, in the
    // gallery and among the probes.
    let big = synthetic::peaked(&mut rng, 576);
    assert!(!big.as_ref().overflow.is_empty());
    let n = people.len() as i32;
    people.push((n, vec![big.clone(), synthetic::peaked(&mut rng, 576)]));
    people.push((n + 1, vec![Person::new(&mut rng).view(&mut rng, 120)]));
    people.push((n + 2, vec![synthetic::peaked(&mut rng, 143)]));
    probes.extend([
        big,
        synthetic::peaked(&mut rng, 576),
        Person::new(&mut rng).view(&mut rng, 120),
    ]);
    let (cpu, gpu) = both(g, &people);
    compare(&cpu, &gpu, &probes, "overflow and mixed cell sizes");
    let c = cpu.distances_to_label(&probes, n).unwrap();
    let g = gpu.distances_to_label(&probes, n).unwrap();
    for (a, b) in c.iter().zip(&g) {
        assert!(close(a.unwrap(), b.unwrap()), "{b:?} vs {a:?}");
    }
    // Removing the overflow templates' person moves the others' indices.
    cpu.remove_label(0);
    gpu.remove_label(0);
    same(
        &cpu.search_batch(&probes, 4).unwrap(),
        &gpu.search_batch(&probes, 4).unwrap(),
        "after a removal",
    );
}

#[test]
fn ties_go_to_the_earlier_template() {
    let g = gpu_or_skip!("ties_go_to_the_earlier_template");
    let mut rng = Rng::new(9);
    let p = Person::new(&mut rng);
    let (a, b) = (p.view(&mut rng, 143), p.view(&mut rng, 143));
    // Label 7 enrolled first, then 3 with the same templates; then 7 again.
    let people = vec![
        (7, vec![a.clone(), b.clone()]),
        (3, vec![b.clone(), a.clone()]),
        (5, vec![a.clone()]),
    ];
    let (cpu, gpu) = both(g, &people);
    let probe = p.view(&mut rng, 143);
    let c = cpu.search_batch(std::slice::from_ref(&probe), 3).unwrap();
    let g = gpu.search_batch(std::slice::from_ref(&probe), 3).unwrap();
    same(&c, &g, "ties");
    assert_eq!(g[0][0].label, 7);
    assert_eq!(
        gpu.search_batch(std::slice::from_ref(&a), 1).unwrap()[0][0],
        Match {
            label: 7,
            distance: 0.0
        }
    );
}

#[test]
fn nothing_to_search() {
    let gpu = gpu_or_skip!("nothing_to_search");
    let (people, probes) = synthetic::gallery(3, 5, 2);
    assert_eq!(
        gpu.search_batch(&probes, 3).unwrap(),
        vec![Vec::<Match>::new(); probes.len()]
    );
    assert_eq!(
        gpu.distances_to_label(&probes, 0).unwrap(),
        vec![None; probes.len()]
    );
    gpu.update_label(0, people[0].1.clone(), false).unwrap();
    assert_eq!(
        gpu.search_batch(&probes, 0).unwrap(),
        vec![Vec::<Match>::new(); probes.len()]
    );
    assert!(gpu.search_batch(&[], 3).unwrap().is_empty());
    let other = LbphParams {
        grid_x: 4,
        ..LbphParams::default()
    };
    let odd = Template::extract(
        &other,
        &image::GrayImage::from_pixel(92, 112, image::Luma([3])),
    )
    .unwrap();
    assert!(matches!(
        gpu.update_label(1, vec![odd.clone()], false),
        Err(BackendError::LayoutMismatch { .. })
    ));
    assert!(matches!(
        gpu.search_batch(&[odd], 1),
        Err(BackendError::LayoutMismatch { .. })
    ));
}

/// A gallery beyond the memory allowed is refused with its own error, and
/// the gallery before it is intact.
#[test]
fn a_gallery_beyond_the_memory_limit_is_refused() {
    let limit = 24 << 20; // 24 MiB: about 1 000 templates with search buffers
    let gpu = gpu_or_skip!(
        "a_gallery_beyond_the_memory_limit_is_refused",
        CudaOptions {
            memory_limit: Some(limit),
            ..CudaOptions::default()
        }
    );
    let (people, probes) = synthetic::gallery(11, 3000, 10);
    let cpu = CpuBackend::new(LbphParams::default());
    let mut refused = None;
    for (label, templates) in &people {
        match gpu.update_label(*label, templates.clone(), false) {
            Ok(()) => cpu.update_label(*label, templates.clone(), false).unwrap(),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let err = refused.expect("3 000 templates (48 MiB) do not fit in 24 MiB");
    assert!(
        matches!(err, BackendError::OutOfDeviceMemory { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("out of GPU memory"), "{err}");
    eprintln!("refused: {err}; {} templates held", gpu.template_count());
    assert_eq!(gpu.template_count(), cpu.template_count());
    same(
        &cpu.search_batch(&probes[..40], 3).unwrap(),
        &gpu.search_batch(&probes[..40], 3).unwrap(),
        "after the refusal",
    );
}

/// The device's real free memory: take nearly all of it, then ask for more.
#[test]
fn a_gallery_beyond_free_device_memory_is_refused() {
    let gpu = gpu_or_skip!("a_gallery_beyond_free_device_memory_is_refused");
    let ctx = cudarc::driver::CudaContext::new(0).unwrap();
    let (free, _) = ctx.mem_get_info().unwrap();
    let hog_bytes = free.saturating_sub(96 << 20);
    let hog = ctx.default_stream().alloc_zeros::<u8>(hog_bytes);
    let Ok(hog) = hog else {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: could not take {hog_bytes} bytes of device memory to simulate a full GPU"
        );
        return;
    };
    let (people, _) = synthetic::gallery(12, 20_000, 50);
    let mut refused = None;
    for (label, templates) in &people {
        if let Err(e) = gpu.update_label(*label, templates.clone(), false) {
            refused = Some(e);
            break;
        }
    }
    drop(hog);
    let err = refused.expect("20 000 templates (330 MB) do not fit in under 96 MiB");
    assert!(
        matches!(err, BackendError::OutOfDeviceMemory { .. }),
        "{err:?}"
    );
}

/// `create` picks the GPU when asked and when auto, behind the CPU fallback.
#[test]
fn create_gives_the_gpu() {
    let _ = gpu_or_skip!("create_gives_the_gpu");
    let b = backend::create(BackendChoice::Cuda, LbphParams::default()).unwrap();
    assert_eq!(b.name(), "cuda");
    assert_eq!(
        backend::create(BackendChoice::Auto, LbphParams::default())
            .unwrap()
            .name(),
        "cuda"
    );
    let (people, probes) = synthetic::gallery(13, 50, 4);
    let cpu = CpuBackend::new(LbphParams::default());
    for (label, t) in &people {
        b.update_label(*label, t.clone(), false).unwrap();
        cpu.update_label(*label, t.clone(), false).unwrap();
    }
    same(
        &cpu.search_batch(&probes, 2).unwrap(),
        &b.search_batch(&probes, 2).unwrap(),
        "through create",
    );
}

/// Runs everywhere (no GPU needed): the synthetic data the GPU tests and
/// the bench use are valid templates with a structure worth matching.
#[test]
fn synthetic_galleries_are_well_formed() {
    let (people, probes) = synthetic::gallery(21, 4099, 7);
    assert_eq!(people.iter().map(|(_, t)| t.len()).sum::<usize>(), 4099);
    assert_eq!(probes.len(), people.len());
    let cpu = CpuBackend::new(LbphParams::default());
    for (label, t) in &people {
        cpu.update_label(*label, t.clone(), false).unwrap();
    }
    let found = cpu.search_batch(&probes[..50], 1).unwrap();
    let right = found
        .iter()
        .enumerate()
        .filter(|(i, m)| m[0].label == *i as i32)
        .count();
    assert!(
        right >= 45,
        "a fresh view finds its own person: {right} of 50"
    );
    let mut rng = Rng::new(1);
    assert!(!synthetic::peaked(&mut rng, 576)
        .as_ref()
        .overflow
        .is_empty());
    assert!(synthetic::peaked(&mut rng, 143)
        .as_ref()
        .overflow
        .is_empty());
}
