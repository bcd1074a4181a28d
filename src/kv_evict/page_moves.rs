//! Whole-block moves of the paged cache on the device: swapping blocks to pinned host memory and
//! back (preemption), and copy-on-write block copies, as the block manager plans them on a
//! serving-like state (src/kv_evict/plans.rs). One gather/scatter kernel does all three
//! (kernels/kv_evict/copy.cu); for swaps the driver's per-block `cuMemcpyAsync`, what a server
//! without such a kernel issues, runs beside it. Every move is checked byte for byte against the
//! plan: each destination page holds its planned source page, nothing else changed.

use anyhow::{anyhow, ensure, Result};
use rand::Rng;

use super::config::{EvictConfig, Op};
use super::plans::{check_page_moves, move_device_pages, page_moves, PageMoves};
use crate::gpu::{kernels, Buffer, CopyDirection, Gpu, GpuResult, Kernel, PinnedHost};
use crate::suite::{Check, LaunchFn, Provider, Variant, Variants};

const COPY_PAGES_BLOCK: u32 = 256;
const POISON_BYTE: u8 = 0xFF;

/// Device memory of a prepared case: the K and V pools of the planned state.
pub fn device_bytes(c: &EvictConfig) -> u64 {
    (2 * move_device_pages(c) * c.page_bytes()) as u64
}

pub struct PreparedPageMoves {
    c: EvictConfig,
    page_bytes: usize,
    /// The plan's copies: source and destination pages (device blocks or host slots).
    moves: PageMoves,
    /// The pools' contents before any move (device destinations poisoned).
    k_init: Vec<u8>,
    v_init: Vec<u8>,
    /// What a swap-in brings back (random bytes, unlike anything in the pools).
    host_k_init: Vec<u8>,
    host_v_init: Vec<u8>,
    k_pool: Buffer<u8>,
    v_pool: Buffer<u8>,
    host_k: PinnedHost<u8>,
    host_v: PinnedHost<u8>,
    /// Device addresses of the pinned buffers (the kernel reads and writes them over PCIe).
    host_k_address: u64,
    host_v_address: u64,
    src_d: Buffer<i32>,
    dst_d: Buffer<i32>,
}

fn random_bytes(n: usize, rng: &mut impl Rng) -> Vec<u8> {
    let mut bytes = vec![0u8; n];
    rng.fill(&mut bytes[..]);
    bytes
}

impl PreparedPageMoves {
    /// Our gather/scatter kernel, and for swaps the driver's per-block copies beside it.
    pub fn prepare(gpu: &Gpu, c: &EvictConfig) -> Result<Variants<PreparedPageMoves>> {
        c.validate()?;
        ensure!(c.op.moves_blocks(), "{} does not move blocks", c.op.name());
        let mut rng = rand::rng();
        let page_bytes = c.page_bytes();
        let moves = page_moves(c, rng.random());
        check_page_moves(c.op, &moves, c.blocks).map_err(|e| anyhow!("the plan's copies: {e}"))?;
        let pool_pages = moves.device_pages;
        let mut k_init = random_bytes(pool_pages * page_bytes, &mut rng);
        let mut v_init = random_bytes(pool_pages * page_bytes, &mut rng);
        let poisoned: &[i32] = match c.op {
            Op::SwapOut => &[],
            _ => &moves.dst,
        };
        for &p in poisoned {
            let range = p as usize * page_bytes..(p as usize + 1) * page_bytes;
            k_init[range.clone()].fill(POISON_BYTE);
            v_init[range].fill(POISON_BYTE);
        }
        let host_bytes = moves.host_pages * page_bytes;
        let host_k = gpu.alloc_pinned_mapped::<u8>(host_bytes)?;
        let host_v = gpu.alloc_pinned_mapped::<u8>(host_bytes)?;
        let mut prepared = PreparedPageMoves {
            k_pool: gpu.upload(&k_init)?,
            v_pool: gpu.upload(&v_init)?,
            host_k_address: host_k.device_address()?,
            host_v_address: host_v.device_address()?,
            host_k,
            host_v,
            host_k_init: random_bytes(host_bytes, &mut rng),
            host_v_init: random_bytes(host_bytes, &mut rng),
            src_d: gpu.upload(&moves.src)?,
            dst_d: gpu.upload(&moves.dst)?,
            k_init,
            v_init,
            moves,
            page_bytes,
            c: c.clone(),
        };
        prepared.reset_host()?;
        let mut variants = vec![match gpu.kernel(kernels::KV_COPY_PAGES) {
            Ok(kernel) => Variant::new(
                "kv_copy_pages",
                Provider::Roofbench,
                move |s: &mut PreparedPageMoves, gpu| s.launch_kernel(gpu, &kernel),
                PreparedPageMoves::verify,
            ),
            Err(e) => Variant::unavailable("kv_copy_pages", Provider::Roofbench, e.to_string()),
        }];
        if c.op != Op::CopyOnWrite {
            variants.push(Variant::new(
                "cuMemcpyAsync per block",
                Provider::Driver,
                |s: &mut PreparedPageMoves, gpu| s.launch_driver(gpu),
                PreparedPageMoves::verify,
            ));
        }
        gpu.synchronize()?;
        Ok(Variants::new(prepared, variants))
    }

    /// Host buffers as a swap-in expects them; poisoned for a swap-out to overwrite.
    fn reset_host(&mut self) -> Result<()> {
        let swap_out = self.c.op == Op::SwapOut;
        for (host, init) in [
            (&mut self.host_k, &self.host_k_init),
            (&mut self.host_v, &self.host_v_init),
        ] {
            let slice = host.as_mut_slice()?;
            if swap_out {
                slice.fill(POISON_BYTE);
            } else {
                slice.copy_from_slice(init);
            }
        }
        Ok(())
    }

    fn launch_kernel(&self, gpu: &Gpu, kernel: &Kernel) -> GpuResult<()> {
        let count = self.moves.src.len() as i32;
        let page_vectors = (self.page_bytes / 16) as i32;
        let mut launch = gpu.launch(kernel);
        // kv_copy_pages(src_k, src_v, dst_k, dst_v, src_pages, dst_pages, count, page_vectors):
        // a host side is the pinned slot buffer addressed over PCIe, indexed by the plan's slots.
        match self.c.op {
            Op::SwapOut => launch
                .buffer(&self.k_pool)
                .buffer(&self.v_pool)
                .value(&self.host_k_address)
                .value(&self.host_v_address),
            Op::SwapIn => launch
                .value(&self.host_k_address)
                .value(&self.host_v_address)
                .buffer(&self.k_pool)
                .buffer(&self.v_pool),
            _ => launch
                .buffer(&self.k_pool)
                .buffer(&self.v_pool)
                .buffer(&self.k_pool)
                .buffer(&self.v_pool),
        };
        launch
            .buffer(&self.src_d)
            .buffer(&self.dst_d)
            .value(&count)
            .value(&page_vectors);
        // SAFETY: kv_copy_pages signature; check_page_moves proved in `prepare` that every source
        // and destination index is a page of its side (pools of `device_pages`, host buffers of
        // `host_pages`), and that no destination is written twice or read as a source.
        unsafe { launch.run_3d((count as u32, 2, 1), COPY_PAGES_BLOCK, 0) }
    }

    fn launch_driver(&self, gpu: &Gpu) -> GpuResult<()> {
        // (device offset, host offset) of each planned copy.
        let swap_out = self.c.op == Op::SwapOut;
        let pb = self.page_bytes;
        let ranges: Vec<(usize, usize)> = (self.moves.src.iter().zip(&self.moves.dst))
            .map(|(&s, &d)| {
                let (block, slot) = if swap_out { (s, d) } else { (d, s) };
                (block as usize * pb, slot as usize * pb)
            })
            .collect();
        let direction = if swap_out {
            CopyDirection::DeviceToHost
        } else {
            CopyDirection::HostToDevice
        };
        for (pool, host) in [(&self.k_pool, &self.host_k), (&self.v_pool, &self.host_v)] {
            gpu.copy_ranges(pool, host, &ranges, self.page_bytes, direction)?;
        }
        Ok(())
    }

    /// Checks every page the move wrote against the plan (after a swap-out the host slots hold
    /// the plan's source blocks, after a swap-in or a copy on write each destination block its
    /// source page) and that no other page of either side changed.
    fn check(&self, gpu: &Gpu) -> Result<Option<String>> {
        let pb = self.page_bytes;
        let page = |bytes: &[u8], p: usize| bytes[p * pb..(p + 1) * pb].to_vec();
        let pools = [
            (
                "K",
                gpu.download(&self.k_pool)?,
                &self.k_init,
                self.host_k.as_slice()?,
                &self.host_k_init,
            ),
            (
                "V",
                gpu.download(&self.v_pool)?,
                &self.v_init,
                self.host_v.as_slice()?,
                &self.host_v_init,
            ),
        ];
        let swap_out = self.c.op == Op::SwapOut;
        for (name, pool, init, host, host_init) in pools {
            // (the side the move wrote, the side it read as it was before)
            let (written, read) = match self.c.op {
                Op::SwapOut => (host, init.as_slice()),
                Op::SwapIn => (pool.as_slice(), host_init.as_slice()),
                _ => (pool.as_slice(), init.as_slice()),
            };
            let pairs = self.moves.src.iter().zip(&self.moves.dst);
            for (i, (&src, &dst)) in pairs.enumerate() {
                if page(written, dst as usize) != page(read, src as usize) {
                    return Ok(Some(format!(
                        "{name} copy {i}: page {dst} does not hold source page {src}"
                    )));
                }
            }
            let targets: std::collections::HashSet<usize> =
                self.moves.dst.iter().map(|&p| p as usize).collect();
            let untouched = |bytes: &[u8], before: &[u8], targets_here: bool| {
                (0..bytes.len() / pb).find(|p| {
                    !(targets_here && targets.contains(p)) && page(bytes, *p) != page(before, *p)
                })
            };
            if let Some(p) = untouched(&pool, init, !swap_out) {
                return Ok(Some(format!(
                    "{name} device page {p} changed but was not a target"
                )));
            }
            if let Some(p) = untouched(host, host_init, swap_out) {
                return Ok(Some(format!(
                    "{name} host slot {p} changed but was not a target"
                )));
            }
        }
        Ok(None)
    }
}

impl PreparedPageMoves {
    /// Restores the pools and host buffers, moves once, and checks every page.
    fn verify(&mut self, gpu: &Gpu, launch: &mut LaunchFn<Self>) -> Result<Check> {
        gpu.write(&mut self.k_pool, &self.k_init)?;
        gpu.write(&mut self.v_pool, &self.v_init)?;
        gpu.synchronize()?;
        self.reset_host()?;
        launch(self, gpu)?;
        gpu.synchronize()?;
        let bytes = 2 * self.moves.src.len() * self.page_bytes;
        Ok(match self.check(gpu)? {
            None => Check {
                passed: true,
                max_rel_err: 0.0,
                detail: format!(
                    "{} planned blocks ({bytes} bytes) moved exactly, nothing else touched",
                    self.moves.src.len()
                ),
                accuracy: None,
            },
            Some(why) => Check {
                passed: false,
                max_rel_err: 1.0,
                detail: why,
                accuracy: None,
            },
        })
    }
}
