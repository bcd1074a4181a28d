//! Captures from users' own models, read through candle (safetensors and NumPy formats, with
//! f16/bf16 conversion): see [`load_capture`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor};

use super::KvCapture;

const NAMES: [&str; 3] = ["q", "k", "v"];

/// One tensor as f32 with its `(len, heads, dim)`.
struct Heads {
    len: usize,
    heads: usize,
    dim: usize,
    values: Vec<f32>,
}

fn heads_of(name: &str, t: &Tensor) -> Result<Heads> {
    let (len, heads, dim) = match *t.dims() {
        [len, heads, dim] | [1, len, heads, dim] => (len, heads, dim),
        ref other => {
            bail!("{name}: shape {other:?}, expected [len, heads, dim] or [1, len, heads, dim]")
        }
    };
    if !matches!(
        t.dtype(),
        DType::F16 | DType::BF16 | DType::F32 | DType::F64
    ) {
        bail!("{name}: dtype {:?}, expected f16, bf16 or f32", t.dtype());
    }
    let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(Heads {
        len,
        heads,
        dim,
        values,
    })
}

/// `q`, `k` and `v` out of a file's named tensors.
fn take_named(mut tensors: HashMap<String, Tensor>, path: &Path) -> Result<[Tensor; 3]> {
    let mut found: Vec<String> = tensors.keys().cloned().collect();
    found.sort();
    let [q, k, v] = NAMES.map(|name| {
        tensors
            .remove(name)
            .with_context(|| format!("{}: no tensor `{name}` (found {found:?})", path.display()))
    });
    Ok([q?, k?, v?])
}

/// The `.npy` files of a directory or a prefix.
fn npy_paths(path: &Path) -> [PathBuf; 3] {
    NAMES.map(|n| {
        if path.is_dir() {
            path.join(format!("{n}.npy"))
        } else {
            PathBuf::from(format!("{}{n}.npy", path.display()))
        }
    })
}

fn read_tensors(path: &Path) -> Result<[Tensor; 3]> {
    let context = || format!("cannot read {}", path.display());
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let tensors =
                candle_core::safetensors::load(path, &Device::Cpu).with_context(context)?;
            take_named(tensors, path)
        }
        Some("npz") => {
            let tensors = Tensor::read_npz(path).with_context(context)?;
            take_named(tensors.into_iter().collect(), path)
        }
        _ => {
            let [q, k, v] = npy_paths(path).map(|p| {
                Tensor::read_npy(&p).with_context(|| format!("cannot read {}", p.display()))
            });
            Ok([q?, k?, v?])
        }
    }
}

/// A capture of one layer and one sequence from `path`:
/// - `.safetensors`: tensors `q`, `k`, `v`;
/// - `.npz`: arrays `q`, `k`, `v`;
/// - a directory holding `q.npy`, `k.npy`, `v.npy`;
/// - otherwise a prefix: `caps/layer3_` reads `caps/layer3_q.npy`, `caps/layer3_k.npy`, ...
///
/// Shapes are `[len, heads, dim]`, or `[1, len, heads, dim]` (a batch of one, as most frameworks
/// dump them); f16, bf16, f32 (and f64) values become f32. The evaluation query is the last
/// position's, so a capture is the prompt plus the query to evaluate. Errors name the missing
/// tensor or the inconsistent shapes.
pub fn load_capture(path: &Path) -> Result<KvCapture> {
    let [q, k, v] = read_tensors(path)?;
    let (q, k, v) = (heads_of("q", &q)?, heads_of("k", &k)?, heads_of("v", &v)?);
    let file = path.display();
    if q.len != k.len || k.len != v.len {
        bail!(
            "{file}: q, k, v hold {}, {}, {} positions",
            q.len,
            k.len,
            v.len
        );
    }
    if q.dim != k.dim || k.dim != v.dim {
        bail!(
            "{file}: head dims differ: q {}, k {}, v {}",
            q.dim,
            k.dim,
            v.dim
        );
    }
    if k.heads != v.heads {
        bail!("{file}: k has {} heads, v {}", k.heads, v.heads);
    }
    let capture = KvCapture {
        q_heads: q.heads,
        kv_heads: k.heads,
        dim: q.dim,
        len: q.len,
        q: q.values,
        k: k.values,
        v: v.values,
        needles: Vec::new(),
    };
    capture.check().with_context(|| file.to_string())?;
    Ok(capture)
}
