//! Whole-block moves of the paged cache on the device: swapping scattered blocks to pinned host
//! memory and back (preemption), and copy-on-write block copies. One gather/scatter kernel does
//! all three (kernels/kv_evict/copy.cu); for swaps the driver's per-block `cuMemcpyAsync`, what a
//! server without such a kernel issues, runs beside it. Every move is checked byte for byte.

use anyhow::{ensure, Result};
use rand::seq::SliceRandom;
use rand::Rng;

use super::config::{EvictConfig, Op};
use crate::gpu::{Buffer, CopyDirection, Gpu, GpuResult, Kernel, PinnedHost};
use crate::suite::{Check, LaunchFn, Provider, Variant, Variants};

const COPY_PAGES_BLOCK: u32 = 256;
const POISON_BYTE: u8 = 0xFF;

/// Device memory of a prepared case: two pools of twice the moved blocks.
pub fn device_bytes(c: &EvictConfig) -> u64 {
    (2 * 2 * c.blocks * c.page_bytes()) as u64
}

pub struct PreparedPageMoves {
    c: EvictConfig,
    page_bytes: usize,
    /// The device pages moved, in host-slot order (swaps), or the copy sources (copy-on-write).
    pages: Vec<i32>,
    /// Copy-on-write destinations, disjoint from `pages`.
    cow_targets: Vec<i32>,
    /// The pools' contents before any move (copy-on-write targets poisoned).
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
    pages_d: Buffer<i32>,
    cow_targets_d: Buffer<i32>,
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
        let pool_pages = 2 * c.blocks;
        // Scattered pages: a random half of the pool, in random order; the other half are the
        // copy-on-write targets.
        let mut order: Vec<i32> = (0..pool_pages as i32).collect();
        order.shuffle(&mut rng);
        let (pages, cow_targets) = (order[..c.blocks].to_vec(), order[c.blocks..].to_vec());
        let mut k_init = random_bytes(pool_pages * page_bytes, &mut rng);
        let mut v_init = random_bytes(pool_pages * page_bytes, &mut rng);
        let poisoned = match c.op {
            Op::CopyOnWrite => &cow_targets,
            Op::SwapIn => &pages,
            _ => &Vec::new(),
        };
        for &p in poisoned {
            let range = p as usize * page_bytes..(p as usize + 1) * page_bytes;
            k_init[range.clone()].fill(POISON_BYTE);
            v_init[range].fill(POISON_BYTE);
        }
        let host_bytes = c.blocks * page_bytes;
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
            pages_d: gpu.upload(&pages)?,
            cow_targets_d: gpu.upload(&cow_targets)?,
            k_init,
            v_init,
            pages,
            cow_targets,
            page_bytes,
            c: c.clone(),
        };
        prepared.reset_host()?;
        let mut variants = vec![match gpu.kernel("kv_copy_pages") {
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
        let count = self.c.blocks as i32;
        let page_vectors = (self.page_bytes / 16) as i32;
        let null = 0u64;
        let mut launch = gpu.launch(kernel);
        // kv_copy_pages(src_k, src_v, dst_k, dst_v, src_pages, dst_pages, count, page_vectors):
        // a host side is a dense buffer (null page list) addressed over PCIe.
        match self.c.op {
            Op::SwapOut => launch
                .buffer(&self.k_pool)
                .buffer(&self.v_pool)
                .value(&self.host_k_address)
                .value(&self.host_v_address)
                .buffer(&self.pages_d)
                .value(&null),
            Op::SwapIn => launch
                .value(&self.host_k_address)
                .value(&self.host_v_address)
                .buffer(&self.k_pool)
                .buffer(&self.v_pool)
                .value(&null)
                .buffer(&self.pages_d),
            _ => launch
                .buffer(&self.k_pool)
                .buffer(&self.v_pool)
                .buffer(&self.k_pool)
                .buffer(&self.v_pool)
                .buffer(&self.pages_d)
                .buffer(&self.cow_targets_d),
        };
        launch.value(&count).value(&page_vectors);
        // SAFETY: kv_copy_pages signature; page lists index pages of the pools, dense sides hold
        // `count` pages.
        unsafe { launch.run_3d((count as u32, 2, 1), COPY_PAGES_BLOCK, 0) }
    }

    fn launch_driver(&self, gpu: &Gpu) -> GpuResult<()> {
        let ranges: Vec<(usize, usize)> = self
            .pages
            .iter()
            .enumerate()
            .map(|(slot, &p)| (p as usize * self.page_bytes, slot * self.page_bytes))
            .collect();
        let direction = if self.c.op == Op::SwapOut {
            CopyDirection::DeviceToHost
        } else {
            CopyDirection::HostToDevice
        };
        for (pool, host) in [(&self.k_pool, &self.host_k), (&self.v_pool, &self.host_v)] {
            gpu.copy_ranges(pool, host, &ranges, self.page_bytes, direction)?;
        }
        Ok(())
    }

    /// Checks every page the move wrote and that no other page changed.
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
        for (name, pool, init, host, host_init) in pools {
            for (slot, (&src, &dst)) in self.pages.iter().zip(&self.cow_targets).enumerate() {
                let (src, dst) = (src as usize, dst as usize);
                let (got, want, what) = match self.c.op {
                    Op::SwapOut => (page(host, slot), page(init, src), "host slot"),
                    Op::SwapIn => (page(&pool, src), page(host_init, slot), "device page"),
                    _ => (page(&pool, dst), page(init, src), "copy target"),
                };
                if got != want {
                    return Ok(Some(format!("{name} {what} of block {slot} differs")));
                }
            }
            let written: std::collections::HashSet<usize> = match self.c.op {
                Op::SwapOut => Default::default(),
                Op::SwapIn => self.pages.iter().map(|&p| p as usize).collect(),
                _ => self.cow_targets.iter().map(|&p| p as usize).collect(),
            };
            let pages = pool.len() / pb;
            if let Some(p) =
                (0..pages).find(|p| !written.contains(p) && page(&pool, *p) != page(init, *p))
            {
                return Ok(Some(format!(
                    "{name} page {p} changed but was not a target"
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
        let bytes = 2 * self.c.blocks * self.page_bytes;
        Ok(match self.check(gpu)? {
            None => Check {
                passed: true,
                max_rel_err: 0.0,
                detail: format!(
                    "{} blocks ({bytes} bytes) moved exactly, nothing else touched",
                    self.c.blocks
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
