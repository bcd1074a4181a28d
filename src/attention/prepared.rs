//! A decode-attention case on the device: random q, K and V in their formats, a shuffled page
//! table, the decode + merge launch pair, and the append kernel; each verified against the CPU.

use anyhow::{Context, Result};
use rand::seq::index::sample;
use rand::Rng;

use super::config::{AttentionConfig, FAST_HEAD_DIMS};
use super::inputs::CaseInputs;
use super::layout::PagedLayout;
use super::reference::{compare, decode_reference, Arithmetic, Comparison, HostInputs};
use crate::gpu::{Buffer, Gpu, GpuResult, Kernel, Launch};
use crate::numeric::Element;
use crate::suite::{Check, LaunchFn, Provider, Variant, Variants};

// Launch shapes, from the headers of kernels/attention/paged_decode.cu and paged_append.cu.
/// Decode: grid (splits, kv heads, batch).
const DECODE_BLOCK: u32 = 256;
/// Decode's dynamic shared memory (the cp.async tile ring), the same for every instance.
const DECODE_SMEM: u32 = 98_304;
/// Merge: grid (q_len * q heads, batch).
const MERGE_BLOCK: u32 = 64;
/// Append: grid (q_len * kv heads, batch); threads 0-31 write K, 32-63 write V.
const APPEND_BLOCK: u32 = 64;

const KV_TYPES: [Element; 4] = [Element::Bf16, Element::Fp16, Element::E4m3, Element::E5m2];
const Q_TYPES: [Element; 2] = [Element::Bf16, Element::Fp16];

fn decode_kernel_name(c: &AttentionConfig) -> String {
    let dim = if FAST_HEAD_DIMS.contains(&c.head_dim) {
        format!("d{}", c.head_dim)
    } else {
        "dany".into()
    };
    format!("paged_decode_{}_{}_{dim}", c.kv_dtype, c.q_dtype)
}

fn merge_kernel_name(c: &AttentionConfig) -> String {
    format!("paged_decode_merge_{}", c.q_dtype)
}

fn append_kernel_name(c: &AttentionConfig) -> String {
    format!("paged_append_{}_{}", c.kv_dtype, c.q_dtype)
}

/// Every attention kernel, for the embedded-kernel checks.
pub fn all_kernel_names() -> Vec<String> {
    let mut names = Vec::new();
    for q in Q_TYPES {
        names.push(format!("paged_decode_merge_{q}"));
        for kv in KV_TYPES {
            names.push(format!("paged_append_{kv}_{q}"));
            for d in FAST_HEAD_DIMS
                .iter()
                .map(|d| format!("d{d}"))
                .chain(["dany".to_string()])
            {
                names.push(format!("paged_decode_{kv}_{q}_{d}"));
            }
        }
    }
    names
}

/// Device memory of a prepared case: pools, q/out, partials, tables. Computed from the lengths,
/// never by building the layout (a prediction of a case far too large for any GPU must not
/// allocate what the GPU would).
pub fn device_bytes(c: &AttentionConfig) -> u64 {
    let lens = c.context_lens();
    let (num_pages, page_size, table_entries) = if c.contiguous {
        (c.batch, c.max_context().max(1), c.batch)
    } else {
        let (pages, max_pages) = PagedLayout::paged_counts(&lens, c.page_size, c.shared_tokens());
        (pages, c.page_size, c.batch * max_pages)
    };
    let pools = 2 * num_pages * c.kv_heads * page_size * c.head_dim * c.kv_dtype.bytes();
    let rows = c.batch * c.q_len * c.q_heads;
    let q_out = 2 * rows * c.head_dim * c.q_dtype.bytes();
    let partials = c.num_splits(256) * rows * (c.head_dim + 1) * 4;
    let new_tokens = 2 * c.batch * c.q_len * c.kv_heads * c.head_dim * c.q_dtype.bytes();
    (pools + q_out + partials + new_tokens + table_entries * 4) as u64
}

pub struct PreparedAttention {
    config: AttentionConfig,
    /// Kernel arguments derived once: `max_pages_per_seq` and 1 for per-kv-head scales.
    max_pages: i32,
    scale_stride: i32,
    layout: PagedLayout,
    splits: usize,
    /// The uploaded inputs (the pools as bytes: append tests restore the slots they overwrite).
    host: HostInputs,
    q: Buffer<u8>,
    k_pool: Buffer<u8>,
    v_pool: Buffer<u8>,
    block_tables: Buffer<i32>,
    context_lens: Buffer<i32>,
    k_scales: Buffer<f32>,
    v_scales: Buffer<f32>,
    o_partial: Buffer<f32>,
    lse_partial: Buffer<f32>,
    out: Buffer<u8>,
    /// The new tokens' K and V in the q type, `[batch][q_len][kv_heads][head_dim]`.
    k_new: Buffer<u8>,
    v_new: Buffer<u8>,
    k_new_host: Vec<f32>,
    v_new_host: Vec<f32>,
}

impl PreparedAttention {
    /// Random inputs on a shuffled page table; the decode + merge pair and the append kernel.
    pub fn prepare(gpu: &Gpu, c: &AttentionConfig) -> Result<Variants<PreparedAttention>> {
        c.validate()?;
        let CaseInputs {
            layout,
            q_bytes,
            host,
            k_new_bytes,
            v_new_bytes,
        } = CaseInputs::generate(c, rand::rng().random());
        let splits = c.num_splits(gpu.info().sms);
        let (rows, d) = (c.batch * c.q_len * c.q_heads, c.head_dim);
        let variants = vec![decode_variant(gpu, c), append_variant(gpu, c)];
        let prepared = PreparedAttention {
            q: gpu.upload(&q_bytes)?,
            k_pool: gpu.upload(&host.k_pool)?,
            v_pool: gpu.upload(&host.v_pool)?,
            block_tables: gpu.upload(&layout.block_tables)?,
            context_lens: gpu.upload(&layout.context_lens)?,
            k_scales: gpu.upload(&host.k_scales)?,
            v_scales: gpu.upload(&host.v_scales)?,
            o_partial: gpu.alloc(splits * rows * d)?,
            lse_partial: gpu.alloc(splits * rows)?,
            out: gpu.alloc(rows * d * c.q_dtype.bytes())?,
            k_new: gpu.upload(&k_new_bytes)?,
            v_new: gpu.upload(&v_new_bytes)?,
            k_new_host: c.q_dtype.decode_all(&k_new_bytes),
            v_new_host: c.q_dtype.decode_all(&v_new_bytes),
            host,
            max_pages: layout.max_pages_per_seq as i32,
            scale_stride: i32::from(c.per_head_scales),
            config: c.clone(),
            layout,
            splits,
        };
        gpu.synchronize()?;
        Ok(Variants::new(prepared, variants))
    }

    fn launch_decode(&self, gpu: &Gpu, decode: &Kernel, merge: &Kernel) -> GpuResult<()> {
        let c = &self.config;
        let (q_len, q_heads, kv_heads, head_dim) = (
            c.q_len as i32,
            c.q_heads as i32,
            c.kv_heads as i32,
            c.head_dim as i32,
        );
        let (page_size, splits, split_align, window) = (
            self.layout.page_size as i32,
            self.splits as i32,
            c.split_align() as i32,
            c.window as i32,
        );
        let (softmax_scale, softcap) = (c.softmax_scale(), c.softcap);
        let mut launch = gpu.launch(decode);
        launch
            .buffer(&self.q)
            .buffer(&self.k_pool)
            .buffer(&self.v_pool);
        self.push_page_arguments(&mut launch);
        launch
            .buffer(&self.o_partial)
            .buffer(&self.lse_partial)
            .value(&q_len)
            .value(&q_heads)
            .value(&kv_heads)
            .value(&head_dim)
            .value(&page_size)
            .value(&splits)
            .value(&split_align)
            .value(&softmax_scale)
            .value(&softcap)
            .value(&window);
        // Grid (splits, kv heads, batch): fixed by the maxima, so the pair captures into a graph.
        // SAFETY: arguments follow the paged_decode signature; buffers are sized by `new`.
        unsafe {
            launch.run_3d(
                (self.splits as u32, c.kv_heads as u32, c.batch as u32),
                DECODE_BLOCK,
                DECODE_SMEM,
            )?
        };
        let batch = c.batch as i32;
        let mut launch = gpu.launch(merge);
        launch
            .buffer(&self.o_partial)
            .buffer(&self.lse_partial)
            .buffer(&self.out)
            .value(&batch)
            .value(&q_len)
            .value(&q_heads)
            .value(&head_dim)
            .value(&splits);
        // SAFETY: merge signature; grid (q_len * q_heads, batch).
        unsafe {
            launch.run_3d(
                ((c.q_len * c.q_heads) as u32, c.batch as u32, 1),
                MERGE_BLOCK,
                0,
            )
        }
    }

    fn launch_append(&self, gpu: &Gpu, append: &Kernel) -> GpuResult<()> {
        let c = &self.config;
        let (q_len, kv_heads, head_dim, page_size) = (
            c.q_len as i32,
            c.kv_heads as i32,
            c.head_dim as i32,
            self.layout.page_size as i32,
        );
        let mut launch = gpu.launch(append);
        launch
            .buffer(&self.k_new)
            .buffer(&self.v_new)
            .buffer(&self.k_pool)
            .buffer(&self.v_pool);
        self.push_page_arguments(&mut launch);
        launch
            .value(&q_len)
            .value(&kv_heads)
            .value(&head_dim)
            .value(&page_size);
        // SAFETY: paged_append signature; grid (q_len * kv_heads, batch).
        unsafe {
            launch.run_3d(
                ((c.q_len * c.kv_heads) as u32, c.batch as u32, 1),
                APPEND_BLOCK,
                0,
            )
        }
    }

    fn verify_decode(&mut self, gpu: &Gpu, launch: &mut LaunchFn<Self>) -> Result<Check> {
        for buf in [&mut self.o_partial, &mut self.lse_partial] {
            gpu.memset_u32(buf, 0xffff_ffff)?;
        }
        gpu.memset_u32(&mut self.out, 0xffff_ffff)?; // NaN in bf16 and fp16
        launch(self, gpu)?;
        let got = self.config.q_dtype.decode_all(&gpu.download(&self.out)?);
        let checked = rows_to_check(&self.config);
        let rows = decode_reference(&self.config, &self.layout, &self.host, &checked);
        let c = &self.config;
        let d = c.head_dim;
        let Comparison {
            failures,
            first,
            rel_err: rel,
        } = compare(&checked, &rows, &Arithmetic::of(c, self.splits), |n, dd| {
            f64::from(got[checked[n] * d + dd])
        });
        Ok(Check {
            passed: failures == 0,
            max_rel_err: rel,
            detail: match first {
                None => format!(
                    "{} of {} rows checked, all within the format-derived bound; ‖err‖/‖ref‖ = {rel:.2e}",
                    rows.len(),
                    c.batch * c.q_len * c.q_heads
                ),
                Some(f) => format!("{failures} elements outside the bound; first {f}"),
            },
            accuracy: None,
        })
    }

    /// Appends the new tokens, compares every written slot (one head_dim row per token and kv
    /// head: HND keeps it contiguous) with the CPU's encoding, then restores the slot's original
    /// bytes so decode checks keep their reference.
    fn verify_append(&mut self, gpu: &Gpu, launch: &mut LaunchFn<Self>) -> Result<Check> {
        let c = self.config.clone();
        let (e, d) = (c.kv_dtype, c.head_dim);
        launch(self, gpu)?;
        let mut mismatches = Vec::new();
        for b in 0..c.batch {
            let ctx = self.layout.context_lens[b] as usize;
            for i in 0..c.q_len {
                for h in 0..c.kv_heads {
                    let slot =
                        self.layout.index(b, ctx - c.q_len + i, h, c.kv_heads, d, 0) * e.bytes();
                    let bytes = slot..slot + d * e.bytes();
                    let src = ((b * c.q_len + i) * c.kv_heads + h) * d;
                    for (pool, original, new, scale) in [
                        (
                            &mut self.k_pool,
                            &self.host.k_pool,
                            &self.k_new_host,
                            self.host.k_scales[h],
                        ),
                        (
                            &mut self.v_pool,
                            &self.host.v_pool,
                            &self.v_new_host,
                            self.host.v_scales[h],
                        ),
                    ] {
                        let got = gpu.download_range(pool, bytes.clone())?;
                        let want: Vec<u8> = new[src..src + d]
                            .iter()
                            .flat_map(|v| {
                                let mut enc = Vec::new();
                                e.encode_into(v / scale, &mut enc);
                                enc
                            })
                            .collect();
                        if got != want {
                            mismatches.push(format!("seq {b} token {i} kv head {h}"));
                        }
                        gpu.write_at(pool, slot, &original[bytes.clone()])?;
                    }
                }
            }
        }
        gpu.synchronize()?;
        let written = 2 * c.batch * c.q_len * c.kv_heads * c.head_dim;
        Ok(Check {
            passed: mismatches.is_empty(),
            max_rel_err: if mismatches.is_empty() { 0.0 } else { 1.0 },
            detail: match mismatches.first() {
                None => format!("{written} K/V elements written exactly as the CPU encodes them"),
                Some(m) => format!(
                    "{} of {written} elements differ; first at {m}",
                    mismatches.len()
                ),
            },
            accuracy: None,
        })
    }
}

/// The output rows a verification compares: all of them while the f64 reference stays cheap,
/// else 512 random rows plus the first and the last (they exercise both ends of the batch).
fn rows_to_check(c: &AttentionConfig) -> Vec<usize> {
    let rows = c.batch * c.q_len * c.q_heads;
    let work: usize = c.context_lens().iter().sum::<usize>() * c.q_len * c.q_heads * c.head_dim;
    if work <= 1 << 31 {
        return (0..rows).collect();
    }
    let mut picked: Vec<usize> = sample(&mut rand::rng(), rows, 512.min(rows)).into_vec();
    picked.extend([0, rows - 1]);
    picked.sort_unstable();
    picked.dedup();
    picked
}

impl PreparedAttention {
    /// The page-table arguments decode and append both take, in their order.
    fn push_page_arguments<'a>(&'a self, launch: &mut Launch<'a>) {
        launch
            .buffer(&self.block_tables)
            .value(&self.max_pages)
            .buffer(&self.context_lens)
            .buffer(&self.k_scales)
            .buffer(&self.v_scales)
            .value(&self.scale_stride);
    }
}

/// Decode and merge, launched back to back; unavailable where either kernel or the tile ring's
/// shared memory is missing.
fn decode_variant(gpu: &Gpu, c: &AttentionConfig) -> Variant<PreparedAttention> {
    let name = decode_kernel_name(c);
    match decode_kernels(gpu, &name, c) {
        Ok((decode, merge)) => Variant::new(
            name,
            Provider::Roofbench,
            move |s: &mut PreparedAttention, gpu| s.launch_decode(gpu, &decode, &merge),
            |s, gpu, launch| s.verify_decode(gpu, launch).context("decode"),
        ),
        Err(why) => Variant::unavailable(name, Provider::Roofbench, why),
    }
}

/// The decode kernel, allowed its tile ring, and the merge kernel; or why not.
fn decode_kernels(
    gpu: &Gpu,
    name: &str,
    c: &AttentionConfig,
) -> std::result::Result<(Kernel, Kernel), String> {
    let decode = gpu.kernel_by_name(name).map_err(|e| e.to_string())?;
    // The tile ring needs more than the default 48 KiB of shared memory.
    decode
        .allow_dynamic_shared(DECODE_SMEM)
        .map_err(|e| format!("needs {DECODE_SMEM} B of shared memory per block: {e}"))?;
    let merge = gpu
        .kernel_by_name(&merge_kernel_name(c))
        .map_err(|e| e.to_string())?;
    Ok((decode, merge))
}

fn append_variant(gpu: &Gpu, c: &AttentionConfig) -> Variant<PreparedAttention> {
    let name = append_kernel_name(c);
    match gpu.kernel_by_name(&name) {
        Ok(append) => Variant::new(
            name,
            Provider::Roofbench,
            move |s: &mut PreparedAttention, gpu| s.launch_append(gpu, &append),
            |s, gpu, launch| s.verify_append(gpu, launch).context("append"),
        ),
        Err(e) => Variant::unavailable(name, Provider::Roofbench, e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::inputs::layout_of;
    use super::*;

    #[test]
    fn device_bytes_match_the_layout_they_are_computed_without() {
        // Sizes come from the lengths alone (a huge case must not build its page table); they
        // must still be what the built layout holds.
        for spec in [
            "b=3,lens=1:17:4000,p=7",
            "b=2,ctx=300,layout=contiguous",
            "b=5,ctx=100,p=1",
            // A shared prefix: its pages are counted once.
            "b=4,lens=40:37:33:64,p=16,prefix=32",
        ] {
            let c = AttentionConfig::parse(spec).unwrap();
            let layout = layout_of(&c, 0);
            let (page_size, pages) = (layout.page_size, layout.num_pages);
            let pools = 2 * pages * c.kv_heads * page_size * c.head_dim * c.kv_dtype.bytes();
            let rows = c.batch * c.q_len * c.q_heads;
            let rest = 2 * rows * c.head_dim * c.q_dtype.bytes()
                + c.num_splits(256) * rows * (c.head_dim + 1) * 4
                + 2 * c.batch * c.q_len * c.kv_heads * c.head_dim * c.q_dtype.bytes()
                + layout.block_tables.len() * 4;
            assert_eq!(device_bytes(&c), (pools + rest) as u64, "{spec}");
        }
    }

    #[test]
    fn kernel_names_follow_the_case() {
        let c = AttentionConfig::parse("kv=e4m3,q=fp16,d=80").unwrap();
        assert_eq!(decode_kernel_name(&c), "paged_decode_e4m3_fp16_dany");
        let d120 = AttentionConfig::parse("kv=fp16,d=120").unwrap();
        assert_eq!(decode_kernel_name(&d120), "paged_decode_fp16_bf16_dany");
        assert_eq!(merge_kernel_name(&c), "paged_decode_merge_fp16");
        assert_eq!(append_kernel_name(&c), "paged_append_e4m3_fp16");
        let names = all_kernel_names();
        assert_eq!(names.len(), 2 * (1 + 4 * (1 + 6)));
        assert!(names.contains(&decode_kernel_name(&c)));
    }

    #[test]
    fn big_cases_check_a_sample_of_rows() {
        let small = AttentionConfig::parse("b=2,ctx=100").unwrap();
        assert_eq!(rows_to_check(&small).len(), 2 * 32);
        let big = AttentionConfig::parse("b=256,ctx=32768").unwrap();
        let rows = rows_to_check(&big);
        assert!(rows.len() <= 514 && rows.contains(&0) && rows.contains(&(256 * 32 - 1)));
    }
}
