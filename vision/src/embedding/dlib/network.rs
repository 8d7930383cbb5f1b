//! dlib's face recognition ResNet (`anet_type` of dlib's
//! `dnn_face_recognition_ex.cpp`), read from
//! `dlib_face_recognition_resnet_model_v1.dat` and run on a face chip.
//!
//! The network, from the input up: a 7 × 7 / 2 convolution to 32 channels,
//! affine (batch norm frozen into a scale and shift), ReLU, 3 × 3 / 2 max
//! pooling; residual blocks at 32, 64, 128 and 256 channels (each block:
//! two 3 × 3 convolutions with affine and ReLU between them, added to the
//! block's input; a block that halves the size has a stride-2 first
//! convolution and 2 × 2 / 2 average pooling on the added input, which has
//! fewer channels and is zero-padded to the block's); the mean over the
//! last 2 × 2 map; a 128 × 256 matrix without bias. dlib pads a
//! convolution by half its size at stride 1 and not at all at stride 2.
//!
//! The file holds the layers from the loss down to the input, each with a
//! version, then each layer's settings and weights from the input up. The
//! reader walks the expected architecture and checks every header and
//! setting against it, so a model of another shape is refused, not
//! misread.
//!
//! Two exact rewrites make it faster: each convolution absorbs the affine
//! layer after it, and, since the encoder's input has equal red, green and
//! blue (a grey frame), the first convolution adds its three input
//! channels' weights and takes the one grey channel. Both change only the
//! rounding of the float sums.

use rayon::prelude::*;

use super::chip::CHIP_SIZE;
use super::format::{FormatError, Reader};

/// The embedding's length.
pub const OUTPUTS: usize = 128;

/// The layers of `anet_type`, from the input up, as the file must hold them.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spec {
    Con {
        filters: usize,
        size: usize,
        stride: usize,
    },
    Affine,
    Relu,
    MaxPool,
    AvgPool,
    AvgPoolEverything,
    Tag(usize),
    Skip(usize),
    AddPrev(usize),
    Fc(usize),
}

fn architecture() -> Vec<Spec> {
    use Spec::*;
    let mut v = vec![
        Con {
            filters: 32,
            size: 7,
            stride: 2,
        },
        Affine,
        Relu,
        MaxPool,
    ];
    let block = |v: &mut Vec<Spec>, filters: usize, stride: usize| {
        let con = |stride| Con {
            filters,
            size: 3,
            stride,
        };
        v.extend([Tag(1), con(stride), Affine, Relu, con(1), Affine]);
        if stride == 1 {
            v.extend([AddPrev(1), Relu]);
        } else {
            v.extend([Tag(2), Skip(1), AvgPool, AddPrev(2), Relu]);
        }
    };
    for (filters, down, same) in [
        (32, 0, 3),
        (64, 1, 3),
        (128, 1, 2),
        (256, 1, 2),
        (256, 1, 0),
    ] {
        for _ in 0..down {
            block(&mut v, filters, 2);
        }
        for _ in 0..same {
            block(&mut v, filters, 1);
        }
    }
    v.extend([AvgPoolEverything, Fc(OUTPUTS)]);
    v
}

/// A convolution with the affine layer after it folded in, and the ReLU
/// after that when there is one.
struct Conv {
    inputs: usize,
    outputs: usize,
    size: usize,
    stride: usize,
    pad: usize,
    /// `outputs` rows of `inputs × size × size`.
    weights: Vec<f32>,
    bias: Vec<f32>,
    relu: bool,
}

enum Op {
    Conv(Conv),
    Relu,
    MaxPool,
    AvgPool,
    Mean,
    Tag(usize),
    Skip(usize),
    AddPrev(usize),
    /// `inputs × OUTPUTS`, row-major, as dlib keeps it.
    Fc(Vec<f32>),
}

/// The face recognition network.
pub struct Network {
    ops: Vec<Op>,
}

/// An activation: channels × rows × columns.
#[derive(Clone)]
struct Tensor {
    k: usize,
    nr: usize,
    nc: usize,
    data: Vec<f32>,
}

impl Network {
    /// Reads `dlib_face_recognition_resnet_model_v1.dat`'s bytes.
    pub fn read(bytes: &[u8]) -> Result<Self, FormatError> {
        let specs = architecture();
        let mut r = Reader::new(bytes);

        expect_int(&mut r, "the loss layer's version", 1, 1)?;
        if r.expect_string("the loss", &["loss_metric_", "loss_metric_2"])? == "loss_metric_2" {
            r.f32("the loss's margin")?;
            r.f32("the loss's distance threshold")?;
        }
        // Headers, from the top layer down.
        let mut versions = vec![0; specs.len()];
        for (i, spec) in specs.iter().enumerate().rev() {
            versions[i] = match spec {
                Spec::Tag(_) => expect_int(&mut r, "a tag layer's version", 1, 1)?,
                Spec::Skip(_) => expect_int(&mut r, "a skip layer's version", 1, 1)?,
                _ if i == 0 => expect_int(&mut r, "the first layer's version", 2, 3)?,
                _ => expect_int(&mut r, "a layer's version", 1, 2)?,
            };
        }
        r.expect_string("the input layer", &["input_rgb_image_sized"])?;
        let mean = [
            r.f32("the input's mean red")?,
            r.f32("the input's mean green")?,
            r.f32("the input's mean blue")?,
        ];
        for what in ["the input's rows", "the input's columns"] {
            let at = r.offset();
            let n = r.ulong(what)?;
            if n != CHIP_SIZE as u64 {
                return Err(FormatError::OutOfRange {
                    offset: at,
                    what,
                    value: i128::from(n),
                    expected: format!("the chip size {CHIP_SIZE}"),
                });
            }
        }

        // Settings and weights, from the input up.
        let mut ops: Vec<Op> = Vec::new();
        let mut channels = 3;
        let mut tags = [0usize; 3];
        for (i, spec) in specs.iter().enumerate() {
            match *spec {
                Spec::Tag(t) => {
                    tags[t] = channels;
                    ops.push(Op::Tag(t));
                    continue;
                }
                Spec::Skip(t) => {
                    channels = tags[t];
                    ops.push(Op::Skip(t));
                    continue;
                }
                Spec::Con {
                    filters,
                    size,
                    stride,
                } => {
                    ops.push(Op::Conv(read_con(&mut r, channels, filters, size, stride)?));
                    channels = filters;
                }
                Spec::Affine => {
                    let (gamma, beta) = read_affine(&mut r, channels)?;
                    let Some(Op::Conv(conv)) = ops.last_mut() else {
                        unreachable!("the architecture puts an affine layer after each convolution")
                    };
                    let per = conv.weights.len() / conv.outputs;
                    for (o, (g, b)) in gamma.iter().zip(&beta).enumerate() {
                        conv.weights[o * per..(o + 1) * per]
                            .iter_mut()
                            .for_each(|w| *w *= g);
                        conv.bias[o] = conv.bias[o] * g + b;
                    }
                }
                Spec::Relu => {
                    r.expect_string("a ReLU layer", &["relu_"])?;
                    match ops.last_mut() {
                        Some(Op::Conv(conv)) if !conv.relu => conv.relu = true,
                        _ => ops.push(Op::Relu),
                    }
                }
                Spec::MaxPool => {
                    read_pool(&mut r, "max_pool_2", "a max pooling layer", [3, 3, 2, 2])?;
                    ops.push(Op::MaxPool);
                }
                Spec::AvgPool => {
                    read_pool(
                        &mut r,
                        "avg_pool_2",
                        "an average pooling layer",
                        [2, 2, 2, 2],
                    )?;
                    ops.push(Op::AvgPool);
                }
                Spec::AvgPoolEverything => {
                    read_pool(
                        &mut r,
                        "avg_pool_2",
                        "the final average pooling",
                        [0, 0, 1, 1],
                    )?;
                    ops.push(Op::Mean);
                }
                Spec::AddPrev(t) => {
                    r.expect_string("an add_prev layer", &["add_prev_"])?;
                    channels = channels.max(tags[t]);
                    ops.push(Op::AddPrev(t));
                }
                Spec::Fc(outputs) => {
                    ops.push(Op::Fc(read_fc(&mut r, channels, outputs)?));
                }
            }
            // What dlib keeps beside each layer: set-up and gradient flags,
            // and tensors a saved network leaves empty.
            r.bool("a layer's set-up flag")?;
            r.bool("a layer's stale-gradient flag")?;
            r.bool("a layer's disabled-output flag")?;
            r.tensor("a layer's input gradient")?;
            r.tensor("a layer's cached output")?;
            if i == 0 {
                r.tensor("the first layer's final gradient")?;
                if versions[0] >= 3 {
                    r.uint("the sample expansion factor")?;
                }
            } else if versions[i] == 2 {
                r.tensor("a layer's parameter gradient")?;
            }
        }
        r.finish()?;

        // The chip is grey: the first convolution's three input channels
        // see the same value less each channel's mean, over 256.
        let Some(Op::Conv(first)) = ops.first_mut() else {
            unreachable!("the architecture starts with a convolution")
        };
        let area = first.size * first.size;
        let mut weights = Vec::with_capacity(first.outputs * area);
        for o in 0..first.outputs {
            let w = &first.weights[o * 3 * area..(o + 1) * 3 * area];
            for j in 0..area {
                weights.push((0..3).map(|c| w[c * area + j]).sum::<f32>());
            }
            let shift: f32 = (0..3)
                .map(|c| w[c * area..(c + 1) * area].iter().sum::<f32>() * mean[c])
                .sum();
            first.bias[o] -= shift / 256.0;
        }
        first.weights = weights;
        first.inputs = 1;
        for op in &mut ops {
            if let Op::Conv(conv) = op {
                conv.finish();
            }
        }
        Ok(Self { ops })
    }

    /// The 128 numbers for a 150 × 150 grey face chip.
    pub fn embed(&self, chip: &[u8]) -> [f32; OUTPUTS] {
        assert_eq!(chip.len(), CHIP_SIZE * CHIP_SIZE, "a face chip");
        let mut x = Tensor {
            k: 1,
            nr: CHIP_SIZE,
            nc: CHIP_SIZE,
            data: chip.iter().map(|&v| f32::from(v) / 256.0).collect(),
        };
        let mut tags: [Option<Tensor>; 3] = [None, None, None];
        for op in &self.ops {
            x = match op {
                Op::Conv(conv) => conv.forward(&x),
                Op::Relu => {
                    x.data.iter_mut().for_each(|v| *v = v.max(0.0));
                    x
                }
                Op::MaxPool => pool(&x, 3, 2, Pool::Max),
                Op::AvgPool => pool(&x, 2, 2, Pool::Mean),
                Op::Mean => Tensor {
                    k: x.k,
                    nr: 1,
                    nc: 1,
                    data: x
                        .data
                        .chunks_exact(x.nr * x.nc)
                        .map(|p| p.iter().sum::<f32>() / p.len() as f32)
                        .collect(),
                },
                Op::Tag(t) => {
                    tags[*t] = Some(x.clone());
                    x
                }
                Op::Skip(t) => tags[*t]
                    .clone()
                    .expect("the architecture tags before it skips"),
                Op::AddPrev(t) => add_padded(&x, tags[*t].as_ref().expect("tagged")),
                Op::Fc(weights) => {
                    let mut out = vec![0f32; OUTPUTS];
                    for (v, row) in x.data.iter().zip(weights.chunks_exact(OUTPUTS)) {
                        for (o, w) in out.iter_mut().zip(row) {
                            *o += v * w;
                        }
                    }
                    Tensor {
                        k: OUTPUTS,
                        nr: 1,
                        nc: 1,
                        data: out,
                    }
                }
            };
        }
        x.data.try_into().expect("the network ends in 128 numbers")
    }
}

impl Conv {
    /// The weights as GEMM's left operand wants them: column-major
    /// (`inputs × size × size` rows of `outputs`), which packs several
    /// times faster than row-major for the deep layers' wide, short
    /// products.
    fn finish(&mut self) {
        let k = self.weights.len() / self.outputs;
        let mut t = vec![0f32; self.weights.len()];
        for (o, row) in self.weights.chunks_exact(k).enumerate() {
            for (j, w) in row.iter().enumerate() {
                t[j * self.outputs + o] = *w;
            }
        }
        self.weights = t;
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (s, p, st) = (self.size, self.pad, self.stride);
        let nr = (x.nr + 2 * p - s) / st + 1;
        let nc = (x.nc + 2 * p - s) / st + 1;
        let n = nr * nc;
        let k = self.inputs * s * s;
        let cols = im2col(x, s, st, p, nr, nc);
        let mut data = vec![0f32; self.outputs * n];
        // Split the output channels over the cores when the product is big
        // enough to pay for it.
        let chunk = if self.outputs * k * n > 1 << 21 {
            self.outputs.div_ceil(rayon::current_num_threads()).max(1)
        } else {
            self.outputs
        };
        data.par_chunks_mut(chunk * n)
            .enumerate()
            .for_each(|(i, out)| {
                let m = out.len() / n;
                // SAFETY: the weights are k × outputs column-major (rows
                // `i * chunk ..` start at that offset, row stride 1, column
                // stride `outputs`); `cols` is k × n and `out` m × n,
                // row-major; every index stays inside its slice.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        self.weights.as_ptr().add(i * chunk),
                        1,
                        self.outputs as isize,
                        cols.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    );
                }
            });
        for (plane, b) in data.chunks_exact_mut(n).zip(&self.bias) {
            for v in plane.iter_mut() {
                *v += b;
                if self.relu && *v < 0.0 {
                    *v = 0.0;
                }
            }
        }
        Tensor {
            k: self.outputs,
            nr,
            nc,
            data,
        }
    }
}

/// One row per (channel, ky, kx), one column per output pixel: the input
/// pixel each filter tap sees there, zero in the padding.
fn im2col(x: &Tensor, s: usize, st: usize, p: usize, nr: usize, nc: usize) -> Vec<f32> {
    let n = nr * nc;
    let mut cols = vec![0f32; x.k * s * s * n];
    for (row, out) in cols.chunks_exact_mut(n).enumerate() {
        let (c, ky, kx) = (row / (s * s), row / s % s, row % s);
        let plane = &x.data[c * x.nr * x.nc..(c + 1) * x.nr * x.nc];
        // Output columns whose tap lands inside the row: ox·st + kx - p in
        // 0..x.nc.
        let first = (p.saturating_sub(kx)).div_ceil(st);
        let end = ((x.nc + p).saturating_sub(kx)).div_ceil(st).min(nc);
        for oy in 0..nr {
            let Some(iy) = (oy * st + ky).checked_sub(p).filter(|&iy| iy < x.nr) else {
                continue;
            };
            let line = &plane[iy * x.nc..(iy + 1) * x.nc];
            let dst = &mut out[oy * nc..(oy + 1) * nc];
            if st == 1 {
                let from = first + kx - p;
                dst[first..end].copy_from_slice(&line[from..from + (end - first)]);
            } else {
                for ox in first..end {
                    dst[ox] = line[ox * st + kx - p];
                }
            }
        }
    }
    cols
}

/// How a pooling window is summarised.
#[derive(Clone, Copy)]
enum Pool {
    Max,
    Mean,
}

/// Pooling without padding: windows of `size` every `stride` pixels.
fn pool(x: &Tensor, size: usize, stride: usize, how: Pool) -> Tensor {
    let nr = (x.nr - size) / stride + 1;
    let nc = (x.nc - size) / stride + 1;
    let mut data = vec![0f32; x.k * nr * nc];
    let scale = 1.0 / (size * size) as f32;
    for (plane, out) in x
        .data
        .chunks_exact(x.nr * x.nc)
        .zip(data.chunks_exact_mut(nr * nc))
    {
        for oy in 0..nr {
            for ox in 0..nc {
                let mut acc = match how {
                    Pool::Max => f32::NEG_INFINITY,
                    Pool::Mean => 0.0,
                };
                for dy in 0..size {
                    let row = (oy * stride + dy) * x.nc + ox * stride;
                    for &v in &plane[row..row + size] {
                        acc = match how {
                            Pool::Max => acc.max(v),
                            Pool::Mean => acc + v,
                        };
                    }
                }
                out[oy * nc + ox] = match how {
                    Pool::Max => acc,
                    Pool::Mean => acc * scale,
                };
            }
        }
    }
    Tensor {
        k: x.k,
        nr,
        nc,
        data,
    }
}

/// dlib's `add_prev`: the sum over the larger of the two shapes, each
/// tensor zero outside its own.
fn add_padded(a: &Tensor, b: &Tensor) -> Tensor {
    let (k, nr, nc) = (a.k.max(b.k), a.nr.max(b.nr), a.nc.max(b.nc));
    let mut data = vec![0f32; k * nr * nc];
    for t in [a, b] {
        for c in 0..t.k {
            for y in 0..t.nr {
                let src = &t.data[(c * t.nr + y) * t.nc..(c * t.nr + y + 1) * t.nc];
                let dst = &mut data[(c * nr + y) * nc..(c * nr + y) * nc + t.nc];
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }
    Tensor { k, nr, nc, data }
}

fn expect_int(r: &mut Reader, what: &'static str, lo: i32, hi: i32) -> Result<i32, FormatError> {
    let at = r.offset();
    let v = r.int(what)?;
    if v < lo || v > hi {
        return Err(FormatError::OutOfRange {
            offset: at,
            what,
            value: i128::from(v),
            expected: format!("versions {lo} to {hi}"),
        });
    }
    Ok(v)
}

fn expect_dims(
    at: usize,
    what: &'static str,
    found: [usize; 4],
    expected: [usize; 4],
) -> Result<(), FormatError> {
    if found != expected {
        return Err(FormatError::Unexpected {
            offset: at,
            what,
            found: format!("{found:?}"),
            expected: format!("{expected:?}"),
        });
    }
    Ok(())
}

fn read_con(
    r: &mut Reader,
    inputs: usize,
    filters: usize,
    size: usize,
    stride: usize,
) -> Result<Conv, FormatError> {
    let version = r.expect_string("a convolution", &["con_4", "con_5"])?;
    let at = r.offset();
    let (params_dims, params) = r.tensor("a convolution's parameters")?;
    let pad = if stride == 1 { size / 2 } else { 0 };
    r.expect_long("a convolution's filter count", filters as i64)?;
    r.expect_long("a convolution's rows", size as i64)?;
    r.expect_long("a convolution's columns", size as i64)?;
    r.expect_long("a convolution's vertical stride", stride as i64)?;
    r.expect_long("a convolution's horizontal stride", stride as i64)?;
    r.expect_long("a convolution's vertical padding", pad as i64)?;
    r.expect_long("a convolution's horizontal padding", pad as i64)?;
    let w_at = r.offset();
    let w = r.alias_tensor("a convolution's filters")?;
    expect_dims(
        w_at,
        "a convolution's filters",
        w,
        [filters, inputs, size, size],
    )?;
    let b_at = r.offset();
    let b = r.alias_tensor("a convolution's biases")?;
    expect_dims(b_at, "a convolution's biases", b, [1, filters, 1, 1])?;
    for what in [
        "a learning rate multiplier",
        "a weight decay multiplier",
        "a bias learning rate multiplier",
        "a bias weight decay multiplier",
    ] {
        r.f64(what)?;
    }
    let use_bias = version == "con_4" || r.bool("a convolution's use-bias flag")?;
    let n_weights = filters * inputs * size * size;
    expect_dims(
        at,
        "a convolution's parameters",
        params_dims,
        [n_weights + filters, 1, 1, 1],
    )?;
    let (weights, bias) = params.split_at(n_weights);
    Ok(Conv {
        inputs,
        outputs: filters,
        size,
        stride,
        pad,
        weights: weights.to_vec(),
        bias: if use_bias {
            bias.to_vec()
        } else {
            vec![0.0; filters]
        },
        relu: false,
    })
}

fn read_affine(r: &mut Reader, channels: usize) -> Result<(Vec<f32>, Vec<f32>), FormatError> {
    let version = r.expect_string("an affine layer", &["affine_", "affine_2"])?;
    let at = r.offset();
    let (dims, params) = r.tensor("an affine layer's parameters")?;
    expect_dims(
        at,
        "an affine layer's parameters",
        dims,
        [2 * channels, 1, 1, 1],
    )?;
    for what in ["an affine layer's scale", "an affine layer's shift"] {
        let at = r.offset();
        let d = r.alias_tensor(what)?;
        expect_dims(at, what, d, [1, channels, 1, 1])?;
    }
    let at = r.offset();
    let mode = r.int("an affine layer's mode")?;
    if mode != 0 {
        return Err(FormatError::OutOfRange {
            offset: at,
            what: "an affine layer's mode",
            value: i128::from(mode),
            expected: "0, per channel".into(),
        });
    }
    let disabled = version == "affine_2" && r.bool("an affine layer's disabled flag")?;
    let (gamma, beta) = params.split_at(channels);
    Ok(if disabled {
        (vec![1.0; channels], vec![0.0; channels])
    } else {
        (gamma.to_vec(), beta.to_vec())
    })
}

fn read_pool(
    r: &mut Reader,
    version: &'static str,
    what: &'static str,
    [nr, nc, sy, sx]: [i64; 4],
) -> Result<(), FormatError> {
    r.expect_string(what, &[version])?;
    r.expect_long("a pooling window's rows", nr)?;
    r.expect_long("a pooling window's columns", nc)?;
    r.expect_long("a pooling layer's vertical stride", sy)?;
    r.expect_long("a pooling layer's horizontal stride", sx)?;
    r.expect_long("a pooling layer's vertical padding", 0)?;
    r.expect_long("a pooling layer's horizontal padding", 0)?;
    Ok(())
}

fn read_fc(r: &mut Reader, inputs: usize, outputs: usize) -> Result<Vec<f32>, FormatError> {
    let version = r.expect_string("the fully connected layer", &["fc_2", "fc_3"])?;
    r.expect_long("the fully connected layer's outputs", outputs as i64)?;
    r.expect_long("the fully connected layer's inputs", inputs as i64)?;
    let at = r.offset();
    let (dims, params) = r.tensor("the fully connected layer's parameters")?;
    expect_dims(
        at,
        "the fully connected layer's parameters",
        dims,
        [inputs, outputs, 1, 1],
    )?;
    let at = r.offset();
    let w = r.alias_tensor("the fully connected layer's weights")?;
    expect_dims(
        at,
        "the fully connected layer's weights",
        w,
        [inputs, outputs, 1, 1],
    )?;
    r.alias_tensor("the fully connected layer's biases")?;
    r.expect_long("the fully connected layer's bias mode", 1)?;
    for what in [
        "a learning rate multiplier",
        "a weight decay multiplier",
        "a bias learning rate multiplier",
        "a bias weight decay multiplier",
    ] {
        r.f64(what)?;
    }
    if version == "fc_3" {
        r.bool("the fully connected layer's use-bias flag")?;
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_architecture_is_dlibs_29_convolutions_and_a_128_output() {
        let a = architecture();
        let convs = a.iter().filter(|s| matches!(s, Spec::Con { .. })).count();
        assert_eq!(convs, 29);
        assert_eq!(a.last(), Some(&Spec::Fc(OUTPUTS)));
    }

    /// A convolution through im2col and GEMM against the definition.
    #[test]
    fn a_padded_and_a_strided_convolution_match_the_definition() {
        let x = Tensor {
            k: 2,
            nr: 7,
            nc: 6,
            data: (0..84).map(|i| ((i * 37 % 11) as f32) - 5.0).collect(),
        };
        for (stride, pad) in [(1, 1), (2, 0)] {
            let mut conv = Conv {
                inputs: 2,
                outputs: 3,
                size: 3,
                stride,
                pad,
                weights: (0..54)
                    .map(|i| ((i * 13 % 7) as f32) * 0.25 - 0.5)
                    .collect(),
                bias: vec![0.5, -1.0, 2.0],
                relu: false,
            };
            let expected = |o: usize, oy: usize, ox: usize| {
                let mut sum = conv.bias[o];
                for c in 0..2 {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            let iy = (oy * stride + ky) as isize - pad as isize;
                            let ix = (ox * stride + kx) as isize - pad as isize;
                            if iy >= 0 && ix >= 0 && (iy as usize) < 7 && (ix as usize) < 6 {
                                sum += conv.weights[((o * 2 + c) * 3 + ky) * 3 + kx]
                                    * x.data[(c * 7 + iy as usize) * 6 + ix as usize];
                            }
                        }
                    }
                }
                sum
            };
            let want: Vec<f32> = {
                let (nr, nc) = (
                    (7 + 2 * pad - 3) / stride + 1,
                    (6 + 2 * pad - 3) / stride + 1,
                );
                (0..3)
                    .flat_map(|o| (0..nr).flat_map(move |y| (0..nc).map(move |x| (o, y, x))))
                    .map(|(o, y, x)| expected(o, y, x))
                    .collect()
            };
            conv.finish();
            let got = conv.forward(&x);
            assert_eq!(got.data.len(), want.len());
            for (g, w) in got.data.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "stride {stride}: {g} against {w}");
            }
        }
    }

    #[test]
    fn add_prev_pads_the_smaller_tensor_with_zeros() {
        let a = Tensor {
            k: 2,
            nr: 1,
            nc: 2,
            data: vec![1.0, 2.0, 3.0, 4.0],
        };
        let b = Tensor {
            k: 1,
            nr: 2,
            nc: 2,
            data: vec![10.0, 20.0, 30.0, 40.0],
        };
        let s = add_padded(&a, &b);
        assert_eq!((s.k, s.nr, s.nc), (2, 2, 2));
        assert_eq!(s.data, vec![11.0, 22.0, 30.0, 40.0, 3.0, 4.0, 0.0, 0.0]);
    }
}
