//! A stream case on the device: random inputs, our kernels and the driver's equivalent, each
//! launchable and verifiable against the CPU.

use anyhow::Result;

use super::reference::{check_equal, check_sum, check_triad, random_floats, random_words};
use super::{StreamCase, StreamOp};
use crate::gpu::{Buffer, Gpu, GpuResult, Kernel};
use crate::suite::{Check, LaunchFn, Provider, Variant, Variants};

/// Threads per block: a multiple of the warp size that leaves room for 8 resident blocks per SM.
const BLOCK: u32 = 256;
/// Written over outputs before a verification launch: any element the launch misses stays
/// 0xffffffff (a NaN as f32), which no check accepts.
const POISON: u32 = 0xffff_ffff;

/// The device and host arrays of one operation. Host copies of the inputs are kept for checks.
enum Arrays {
    Read {
        src: Buffer<u32>,
        host_src: Vec<u32>,
        partials: Buffer<u64>,
    },
    Write {
        dst: Buffer<u32>,
        value: u32,
    },
    Copy {
        src: Buffer<u32>,
        host_src: Vec<u32>,
        dst: Buffer<u32>,
    },
    Triad {
        a: Buffer<f32>,
        b: Buffer<f32>,
        c: Buffer<f32>,
        host_b: Vec<f32>,
        host_c: Vec<f32>,
        s: f32,
    },
}

/// The arrays every variant of a stream case reads and writes.
pub struct PreparedStream {
    n: usize,
    arrays: Arrays,
}

impl PreparedStream {
    /// Random inputs, our two kernels (4- and 16-byte accesses) and the driver's equivalent.
    pub fn prepare(gpu: &Gpu, case: &StreamCase) -> Result<Variants<PreparedStream>> {
        let n = case.elements;
        let seed: u64 = rand::random();
        let mut variants = Vec::new();
        let mut max_grid = 1;
        for name in case.op.kernels() {
            variants.push(match gpu.kernel_by_name(&name) {
                Ok(kernel) => {
                    let grid = kernel.resident_grid(BLOCK, 0)?;
                    max_grid = max_grid.max(grid as usize);
                    Variant::new(
                        name,
                        Provider::Roofbench,
                        move |s: &mut PreparedStream, gpu| s.launch_kernel(gpu, &kernel, grid),
                        // A read writes one partial sum per block of its grid.
                        move |s, gpu, launch| s.verify(gpu, launch, grid as usize),
                    )
                }
                Err(e) => Variant::unavailable(name, Provider::Roofbench, e.to_string()),
            });
        }
        if let Some(name) = case.op.driver_equivalent() {
            variants.push(Variant::new(
                name,
                Provider::Driver,
                |s: &mut PreparedStream, gpu| s.launch_driver(gpu),
                |s, gpu, launch| s.verify(gpu, launch, 0),
            ));
        }

        let arrays = match case.op {
            StreamOp::Read => {
                let host_src = random_words(seed, n);
                Arrays::Read {
                    src: gpu.upload(&host_src)?,
                    host_src,
                    partials: gpu.alloc(max_grid)?,
                }
            }
            StreamOp::Write => {
                // Never the poison value, so a missed element cannot look written.
                let value = (seed as u32) & 0x7fff_ffff;
                Arrays::Write {
                    dst: gpu.alloc(n)?,
                    value,
                }
            }
            StreamOp::Copy => {
                let host_src = random_words(seed, n);
                Arrays::Copy {
                    src: gpu.upload(&host_src)?,
                    host_src,
                    dst: gpu.alloc(n)?,
                }
            }
            StreamOp::Triad => {
                let host_b = random_floats(seed, n);
                let host_c = random_floats(seed.wrapping_add(1), n);
                let s = random_floats(seed.wrapping_add(2), 1)[0];
                Arrays::Triad {
                    a: gpu.alloc(n)?,
                    b: gpu.upload(&host_b)?,
                    c: gpu.upload(&host_c)?,
                    host_b,
                    host_c,
                    s,
                }
            }
        };
        gpu.synchronize()?;
        Ok(Variants::new(PreparedStream { n, arrays }, variants))
    }

    /// The driver's operation (copy and write have one).
    fn launch_driver(&mut self, gpu: &Gpu) -> GpuResult<()> {
        match &mut self.arrays {
            Arrays::Write { dst, value } => gpu.memset_u32(dst, *value),
            Arrays::Copy { src, dst, .. } => gpu.memcpy_dtod(src, dst),
            _ => unreachable!("read and triad have no driver variant"),
        }
    }

    fn launch_kernel(&self, gpu: &Gpu, kernel: &Kernel, grid: u32) -> GpuResult<()> {
        let n = self.n as u64;
        let mut launch = gpu.launch(kernel);
        // Argument order follows the kernel signatures in kernels/stream/stream.cu.
        match &self.arrays {
            Arrays::Read { src, partials, .. } => launch.buffer(src).value(&n).buffer(partials),
            Arrays::Write { dst, value } => launch.buffer(dst).value(&n).value(value),
            Arrays::Copy { src, dst, .. } => launch.buffer(src).buffer(dst).value(&n),
            Arrays::Triad { a, b, c, s, .. } => {
                launch.buffer(a).buffer(b).buffer(c).value(s).value(&n)
            }
        };
        // SAFETY: arguments match the kernel parameters; every buffer holds n elements (partials:
        // one per block of the largest grid).
        unsafe { launch.run(grid, BLOCK, 0) }
    }

    /// Poisons the output, launches once, and compares with the CPU (`blocks`: the partial sums
    /// a read writes).
    fn verify(
        &mut self,
        gpu: &Gpu,
        launch: &mut LaunchFn<PreparedStream>,
        blocks: usize,
    ) -> Result<Check> {
        match &mut self.arrays {
            Arrays::Read { partials, .. } => gpu.memset_u32(partials, POISON)?,
            Arrays::Write { dst, .. } | Arrays::Copy { dst, .. } => gpu.memset_u32(dst, POISON)?,
            Arrays::Triad { a, .. } => gpu.memset_u32(a, POISON)?,
        }
        launch(self, gpu)?;
        gpu.synchronize()?;
        Ok(match &self.arrays {
            Arrays::Read {
                host_src, partials, ..
            } => check_sum(&gpu.download(partials)?[..blocks], host_src),
            Arrays::Write { dst, value } => check_equal(&gpu.download(dst)?, |_| *value),
            Arrays::Copy { dst, host_src, .. } => check_equal(&gpu.download(dst)?, |i| host_src[i]),
            Arrays::Triad {
                a,
                host_b,
                host_c,
                s,
                ..
            } => check_triad(&gpu.download(a)?, host_b, host_c, *s),
        })
    }
}
