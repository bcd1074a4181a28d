//! The GPU runtime: the only module that touches cudarc.
//!
//! Device discovery and facts, loading embedded kernels by name, typed launches on one stream,
//! device memory, CUDA events and graphs. Every entry point returns [`GpuError`] instead of
//! panicking when there is no driver (cudarc panics on first use without `libcuda`, so
//! [`Gpu::open`] checks for the library before touching it), no device, or no kernels.

pub mod cublaslt;
pub mod embedded;
mod error;
mod kernel_name;
mod telemetry;
pub mod tensor_map;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::sys::{self, CUdevice_attribute as Attr};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, DevicePtrMut,
    LaunchConfig, PushKernelArg,
};
pub use cudarc::driver::{DeviceRepr, ValidAsZeroBits};
use serde::{Deserialize, Serialize};

pub use embedded::{EmbeddedModule, KernelResources, KernelSummary, MODULES};
use error::DriverContext;
pub use error::{GpuError, GpuResult};
pub use kernel_name::{kernels, KernelName};
pub use telemetry::{ClockSnapshot, Telemetry};
pub use tensor_map::TensorMap;

/// Facts about a device, read from the driver (and NVML for the driver version string).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (u32, u32),
    pub sms: u32,
    pub l2_bytes: u64,
    pub memory_bytes: u64,
    pub memory_bus_width_bits: u32,
    /// Maximum memory clock (the driver reports the data-rate-halved clock; see `dram_gbps`).
    pub memory_clock_mhz: u32,
    /// Maximum SM clock.
    pub sm_clock_mhz: u32,
    pub max_shared_per_block_optin: u32,
    pub pci_bus_id: String,
    /// CUDA version the driver supports, e.g. "13.0".
    pub cuda_driver_api: String,
    /// Driver release, e.g. "580.159.04" (from NVML; "unknown" without it).
    pub driver: String,
}

impl DeviceInfo {
    /// DRAM bandwidth implied by bus width x memory clock x 2 (double data rate), in GB/s.
    pub fn dram_gbps(&self) -> f64 {
        f64::from(self.memory_bus_width_bits) / 8.0 * f64::from(self.memory_clock_mhz) * 1e6 * 2.0
            / 1e9
    }

    /// A file-system-friendly name: "NVIDIA H100 80GB HBM3" -> "h100-80gb-hbm3".
    pub fn slug(&self) -> String {
        gpu_slug(&self.name)
    }
}

/// The facts an H100 SXM reports, for tests that need a device without having one.
#[cfg(test)]
pub(crate) fn h100_example() -> DeviceInfo {
    DeviceInfo {
        ordinal: 0,
        name: "NVIDIA H100 80GB HBM3".into(),
        compute_capability: (9, 0),
        sms: 132,
        l2_bytes: 50 << 20,
        memory_bytes: 85_520_809_984,
        memory_bus_width_bits: 5120,
        memory_clock_mhz: 2619,
        sm_clock_mhz: 1980,
        max_shared_per_block_optin: 232_448,
        pci_bus_id: String::new(),
        cuda_driver_api: "13.0".into(),
        driver: "580.159.04".into(),
    }
}

pub fn gpu_slug(name: &str) -> String {
    let lower = name.to_lowercase();
    let trimmed = lower.trim_start_matches("nvidia").trim();
    let mut slug = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_string()
}

/// An open device: one context, one stream, loaded modules.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: DeviceInfo,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    telemetry: Option<Telemetry>,
}

/// Checks for the driver library before any cudarc call (cudarc panics without it).
fn ensure_driver() -> GpuResult<()> {
    // SAFETY: only tries to dlopen libcuda; no CUDA call is made.
    if unsafe { sys::is_culib_present() } {
        Ok(())
    } else {
        Err(GpuError::NoDriver)
    }
}

impl Gpu {
    /// Number of CUDA devices; an error when there is no driver or it does not initialise.
    pub fn count() -> GpuResult<usize> {
        ensure_driver()?;
        cudarc::driver::result::init()
            .map_err(|e| GpuError::NoDevice(format!("cuInit failed: {e}")))?;
        let n = CudaContext::device_count().ctx("cuDeviceGetCount")?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    /// Opens device `ordinal`.
    pub fn open(ordinal: usize) -> GpuResult<Gpu> {
        let count = Gpu::count()?;
        if count == 0 {
            return Err(GpuError::NoDevice("the driver reports 0 devices".into()));
        }
        if ordinal >= count {
            return Err(GpuError::NoDevice(format!(
                "device {ordinal} requested, {count} present"
            )));
        }
        let ctx = CudaContext::new(ordinal).ctx("cuCtxCreate")?;
        // roofbench orders all work on one stream itself; cudarc's per-buffer event tracking would
        // add event records around every launch, inside the timed region.
        // SAFETY: called before any buffer exists; all work goes to `stream`.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.new_stream().ctx("cuStreamCreate")?;
        let telemetry_source = telemetry::Telemetry::open(&pci_bus_id(&ctx)?);
        let info = read_device_info(&ctx, ordinal, telemetry_source.as_ref())?;
        Ok(Gpu {
            ctx,
            stream,
            info,
            modules: Mutex::new(HashMap::new()),
            telemetry: telemetry_source,
        })
    }

    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// NVML clocks, power and throttle reasons, when NVML is present.
    pub fn telemetry(&self) -> Option<&Telemetry> {
        self.telemetry.as_ref()
    }

    /// (free, total) device memory in bytes.
    pub fn memory(&self) -> GpuResult<(u64, u64)> {
        let (free, total) = self.ctx.mem_get_info().ctx("cuMemGetInfo")?;
        Ok((free as u64, total as u64))
    }

    /// Fails with [`GpuError::OutOfMemory`] unless `bytes` (plus a safety margin) are free.
    pub fn ensure_free(&self, what: &str, bytes: u64) -> GpuResult<()> {
        let (free, _) = self.memory()?;
        // Leave room for the driver, the L2 flush buffer and fragmentation.
        let margin = 256 << 20;
        if bytes.saturating_add(margin) > free {
            return Err(GpuError::OutOfMemory {
                what: what.to_string(),
                needed: bytes,
                free,
            });
        }
        Ok(())
    }

    /// Loads `name` from the embedded modules, checking it can run on this device. A name known
    /// at compile time is a constant of [`kernels`]; see [`Gpu::kernel_by_name`] for others.
    pub fn kernel(&self, name: KernelName) -> GpuResult<Kernel> {
        if let Some(why) = embedded::BUILT_WITHOUT_KERNELS {
            return Err(GpuError::BuiltWithoutKernels(why));
        }
        let name = name.as_str();
        let module =
            embedded::module_of(name).ok_or_else(|| GpuError::UnknownKernel(name.into()))?;
        let (major, minor) = self.info.compute_capability;
        if module.runnable_on((major, minor)).is_none() {
            return Err(GpuError::KernelUnavailable {
                kernel: name.into(),
                device: self.info.name.clone(),
                major,
                minor,
                built_for: module.requirement(),
            });
        }
        let loaded = {
            let mut cache = self.modules.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(module.name) {
                Some(m) => m.clone(),
                None => {
                    let m = self
                        .ctx
                        .load_module(cudarc::nvrtc::Ptx::from_binary(module.fatbin.to_vec()))
                        .ctx("cuModuleLoadData")?;
                    cache.insert(module.name, m.clone());
                    m
                }
            }
        };
        let function = loaded.load_function(name).ctx("cuModuleGetFunction")?;
        Ok(Kernel {
            name: name.to_string(),
            function,
            sms: self.info.sms,
        })
    }

    /// [`Gpu::kernel`] for a name composed at run time (one kernel per dtype, tile, ...): an
    /// unknown name is [`GpuError::UnknownKernel`]. The suites' `kernel_names` lists let the
    /// embedded-kernel test check every name they can compose.
    pub fn kernel_by_name(&self, name: &str) -> GpuResult<Kernel> {
        self.kernel(KernelName::parse(name)?)
    }

    /// Uninitialised device memory for `len` elements.
    pub fn alloc<T: DeviceRepr>(&self, len: usize) -> GpuResult<Buffer<T>> {
        self.ensure_free("allocation", (len * std::mem::size_of::<T>()) as u64)?;
        // SAFETY: the contents are uninitialised; every caller writes before it reads.
        let slice = unsafe { self.stream.alloc::<T>(len.max(1)) }.ctx("cuMemAlloc")?;
        Ok(Buffer { slice, len })
    }

    /// Device copy of `data`.
    pub fn upload<T: DeviceRepr>(&self, data: &[T]) -> GpuResult<Buffer<T>> {
        let mut buf = self.alloc::<T>(data.len())?;
        self.write(&mut buf, data)?;
        Ok(buf)
    }

    /// Copies `data` into the start of `buf`.
    pub fn write<T: DeviceRepr>(&self, buf: &mut Buffer<T>, data: &[T]) -> GpuResult<()> {
        self.write_at(buf, 0, data)
    }

    /// Copies `data` into `buf` from element `offset` on.
    pub fn write_at<T: DeviceRepr>(
        &self,
        buf: &mut Buffer<T>,
        offset: usize,
        data: &[T],
    ) -> GpuResult<()> {
        assert!(
            offset + data.len() <= buf.len,
            "write of {}+{} into {} elements",
            offset,
            data.len(),
            buf.len
        );
        if data.is_empty() {
            return Ok(());
        }
        let mut view = buf.slice.slice_mut(offset..offset + data.len());
        self.stream.memcpy_htod(data, &mut view).ctx("cuMemcpyHtoD")
    }

    /// Host copy of `buf` (waits for the stream).
    pub fn download<T: DeviceRepr + Default + Clone>(&self, buf: &Buffer<T>) -> GpuResult<Vec<T>> {
        self.download_range(buf, 0..buf.len)
    }

    /// Host copy of elements `range` of `buf` (waits for the stream).
    pub fn download_range<T: DeviceRepr + Default + Clone>(
        &self,
        buf: &Buffer<T>,
        range: std::ops::Range<usize>,
    ) -> GpuResult<Vec<T>> {
        assert!(
            range.end <= buf.len,
            "download of {range:?} from {} elements",
            buf.len
        );
        let mut host = vec![T::default(); range.len()];
        if !range.is_empty() {
            self.stream
                .memcpy_dtoh(&buf.slice.slice(range), &mut host)
                .ctx("cuMemcpyDtoH")?;
        }
        self.synchronize()?;
        Ok(host)
    }

    /// Sets every 32-bit word of `buf` to `value` with `cuMemsetD32Async` (the driver's fill).
    pub fn memset_u32<T>(&self, buf: &mut Buffer<T>, value: u32) -> GpuResult<()> {
        let words = buf.bytes() / 4;
        let (ptr, _guard) = buf.slice.device_ptr_mut(&self.stream);
        // SAFETY: `ptr` is a live allocation of at least `words` 32-bit words.
        unsafe { sys::cuMemsetD32Async(ptr, value, words as usize, self.stream.cu_stream()) }
            .result()
            .ctx("cuMemsetD32Async")
    }

    /// Copies all of `src` into `dst` with `cuMemcpyDtoDAsync` (the driver's copy).
    pub fn memcpy_dtod<T>(&self, src: &Buffer<T>, dst: &mut Buffer<T>) -> GpuResult<()> {
        assert_eq!(
            src.len, dst.len,
            "device copy between buffers of different length"
        );
        let bytes = src.bytes() as usize;
        let (s, _gs) = src.slice.device_ptr(&self.stream);
        let (d, _gd) = dst.slice.device_ptr_mut(&self.stream);
        // SAFETY: both are live allocations of `bytes` bytes.
        unsafe { cudarc::driver::result::memcpy_dtod_async(d, s, bytes, self.stream.cu_stream()) }
            .ctx("cuMemcpyDtoDAsync")
    }

    /// Page-locked host memory for `len` elements (what fast host<->device copies need).
    pub fn alloc_pinned<T: DeviceRepr>(&self, len: usize) -> GpuResult<PinnedHost<T>> {
        // SAFETY: contents are uninitialised until the caller writes them.
        let slice = unsafe {
            self.ctx
                .alloc_pinned_with_flags::<T>(len.max(1), sys::CU_MEMHOSTALLOC_PORTABLE)
        }
        .ctx("cuMemHostAlloc")?;
        Ok(PinnedHost { slice, len })
    }

    /// Page-locked host memory that kernels can also read and write directly over the host link
    /// (zero-copy; see [`PinnedHost::device_address`]).
    pub fn alloc_pinned_mapped<T: DeviceRepr>(&self, len: usize) -> GpuResult<PinnedHost<T>> {
        // SAFETY: contents are uninitialised until the caller writes them.
        let slice = unsafe {
            self.ctx.alloc_pinned_with_flags::<T>(
                len.max(1),
                sys::CU_MEMHOSTALLOC_PORTABLE | sys::CU_MEMHOSTALLOC_DEVICEMAP,
            )
        }
        .ctx("cuMemHostAlloc")?;
        Ok(PinnedHost { slice, len })
    }

    /// Enqueues copies of byte ranges between a device buffer and pinned host memory, one
    /// `cuMemcpyAsync` per `(device offset, host offset)` pair, `bytes` each: the per-block copies
    /// a swap without a gather kernel makes.
    pub fn copy_ranges(
        &self,
        device: &Buffer<u8>,
        host: &PinnedHost<u8>,
        ranges: &[(usize, usize)],
        bytes: usize,
        direction: CopyDirection,
    ) -> GpuResult<()> {
        let host_base = host.slice.as_ptr().ctx("cuMemHostAlloc")? as *mut u8;
        let (device_base, _guard) = device.slice.device_ptr(&self.stream);
        for &(device_offset, host_offset) in ranges {
            assert!(
                device_offset + bytes <= device.len && host_offset + bytes <= host.len,
                "copy range outside its buffers"
            );
            let d = device_base + device_offset as u64;
            // SAFETY: both ranges lie inside live allocations (checked above); the host memory is
            // page-locked, so the copy is asynchronous DMA.
            let result = unsafe {
                let h = host_base.add(host_offset).cast::<std::ffi::c_void>();
                match direction {
                    CopyDirection::DeviceToHost => {
                        sys::cuMemcpyDtoHAsync_v2(h, d, bytes, self.stream.cu_stream())
                    }
                    CopyDirection::HostToDevice => {
                        sys::cuMemcpyHtoDAsync_v2(d, h, bytes, self.stream.cu_stream())
                    }
                }
            };
            result.result().ctx("cuMemcpyAsync")?;
        }
        Ok(())
    }

    /// Enqueues a host-to-device copy from page-locked memory (asynchronous DMA).
    pub fn copy_from_pinned<T: DeviceRepr>(
        &self,
        src: &PinnedHost<T>,
        dst: &mut Buffer<T>,
    ) -> GpuResult<()> {
        assert_eq!(src.len, dst.len, "copy between buffers of different length");
        let mut view = dst.slice.slice_mut(..dst.len);
        self.stream
            .memcpy_htod(&src.slice, &mut view)
            .ctx("cuMemcpyHtoDAsync")
    }

    /// Enqueues a device-to-host copy into page-locked memory (asynchronous DMA).
    pub fn copy_to_pinned<T: DeviceRepr>(
        &self,
        src: &Buffer<T>,
        dst: &mut PinnedHost<T>,
    ) -> GpuResult<()> {
        assert_eq!(src.len, dst.len, "copy between buffers of different length");
        self.stream
            .memcpy_dtoh(&src.slice.slice(..src.len), &mut dst.slice)
            .ctx("cuMemcpyDtoHAsync")
    }

    /// Device-to-host copy into ordinary (pageable) memory; the driver stages it, so it returns
    /// only when the data has arrived.
    pub fn copy_to_pageable<T: DeviceRepr>(&self, src: &Buffer<T>, dst: &mut [T]) -> GpuResult<()> {
        assert_eq!(
            src.len,
            dst.len(),
            "copy between buffers of different length"
        );
        self.stream
            .memcpy_dtoh(&src.slice.slice(..src.len), dst)
            .ctx("cuMemcpyDtoH")
    }

    /// Starts a launch of `kernel` on this device's stream; add arguments, then [`Launch::run`].
    pub fn launch<'a>(&'a self, kernel: &'a Kernel) -> Launch<'a> {
        Launch {
            args: self.stream.launch_builder(&kernel.function),
            kernel: &kernel.name,
        }
    }

    /// A timing event (records GPU time when the stream reaches it).
    pub fn event(&self) -> GpuResult<Event> {
        let event = self
            .ctx
            .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
            .ctx("cuEventCreate")?;
        Ok(Event { event })
    }

    /// Records `event` on the stream.
    pub fn record(&self, event: &Event) -> GpuResult<()> {
        event.event.record(&self.stream).ctx("cuEventRecord")
    }

    /// Captures the work `enqueue` puts on the stream into a CUDA graph, to replay without
    /// per-launch CPU overhead.
    pub fn capture(&self, enqueue: &mut dyn FnMut() -> GpuResult<()>) -> GpuResult<Graph> {
        self.stream
            .begin_capture(sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_THREAD_LOCAL)
            .ctx("cuStreamBeginCapture")?;
        let enqueued = enqueue();
        let graph = self
            .stream
            .end_capture(sys::CUgraphInstantiate_flags(0))
            .ctx("cuStreamEndCapture")?;
        enqueued?;
        let graph = graph.ok_or(GpuError::Driver {
            call: "cuStreamEndCapture",
            source: cudarc::driver::DriverError(
                sys::cudaError_enum::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED,
            ),
        })?;
        graph.upload().ctx("cuGraphUpload")?;
        Ok(Graph { graph })
    }

    /// Waits for all work on the stream and surfaces any asynchronous error.
    pub fn synchronize(&self) -> GpuResult<()> {
        self.stream.synchronize().ctx("cuStreamSynchronize")?;
        self.ctx.check_err().ctx("asynchronous CUDA error")
    }
}

fn pci_bus_id(ctx: &CudaContext) -> GpuResult<String> {
    let attr = |a| ctx.attribute(a).ctx("cuDeviceGetAttribute");
    Ok(format!(
        "{:08x}:{:02x}:{:02x}.0",
        attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?,
        attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?,
        attr(Attr::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?
    ))
}

fn read_device_info(
    ctx: &CudaContext,
    ordinal: usize,
    telemetry: Option<&Telemetry>,
) -> GpuResult<DeviceInfo> {
    let attr =
        |a| -> GpuResult<u32> { Ok(ctx.attribute(a).ctx("cuDeviceGetAttribute")?.max(0) as u32) };
    let (major, minor) = ctx.compute_capability().ctx("cuDeviceComputeCapability")?;
    let mut version: std::ffi::c_int = 0;
    // SAFETY: plain out-parameter call.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .ctx("cuDriverGetVersion")?;
    // CUDA 13 deprecates the clock attributes; where they read 0, NVML's maximum clocks stand in.
    let nvml_clocks = telemetry
        .and_then(Telemetry::max_clocks_mhz)
        .unwrap_or((0, 0));
    let or_nvml = |driver: u32, nvml: u32| if driver > 0 { driver } else { nvml };
    Ok(DeviceInfo {
        ordinal,
        name: ctx.name().ctx("cuDeviceGetName")?,
        compute_capability: (major.max(0) as u32, minor.max(0) as u32),
        sms: attr(Attr::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
        l2_bytes: u64::from(attr(Attr::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?),
        memory_bytes: ctx.total_mem().ctx("cuDeviceTotalMem")? as u64,
        memory_bus_width_bits: attr(Attr::CU_DEVICE_ATTRIBUTE_GLOBAL_MEMORY_BUS_WIDTH)?,
        memory_clock_mhz: or_nvml(
            attr(Attr::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)? / 1000,
            nvml_clocks.1,
        ),
        sm_clock_mhz: or_nvml(
            attr(Attr::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)? / 1000,
            nvml_clocks.0,
        ),
        max_shared_per_block_optin: attr(
            Attr::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )?,
        pci_bus_id: pci_bus_id(ctx)?,
        cuda_driver_api: format!("{}.{}", version / 1000, (version % 1000) / 10),
        driver: telemetry
            .and_then(|t| t.driver_version())
            .unwrap_or_else(|| "unknown".into()),
    })
}

/// A loaded kernel.
pub struct Kernel {
    name: String,
    function: CudaFunction,
    sms: u32,
}

impl Kernel {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Allows launches with `bytes` of dynamic shared memory (above the default 48 KiB a kernel
    /// must opt in; fails if the device has less per block).
    pub fn allow_dynamic_shared(&self, bytes: u32) -> GpuResult<()> {
        self.function
            .set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                bytes as i32,
            )
            .ctx("cuFuncSetAttribute")
    }

    /// A grid that fills the device once: SMs x resident blocks per SM at this block size.
    /// Grid-stride kernels launched with it run one wave, with no tail of partial waves.
    pub fn resident_grid(&self, block: u32, dynamic_smem: u32) -> GpuResult<u32> {
        let per_sm = self
            .function
            .occupancy_max_active_blocks_per_multiprocessor(block, dynamic_smem as usize, None)
            .ctx("cuOccupancyMaxActiveBlocksPerMultiprocessor")?;
        Ok(self.sms * per_sm.max(1))
    }
}

/// Arguments of one launch; pushed in the kernel's parameter order.
pub struct Launch<'a> {
    args: cudarc::driver::LaunchArgs<'a>,
    kernel: &'a str,
}

impl<'a> Launch<'a> {
    /// A device buffer argument (a pointer parameter, read or written by the kernel).
    pub fn buffer<T>(&mut self, buf: &'a Buffer<T>) -> &mut Self {
        self.args.arg(&buf.slice);
        self
    }

    /// A by-value argument; its type must match the kernel parameter exactly.
    pub fn value<T: DeviceRepr>(&mut self, v: &'a T) -> &mut Self {
        self.args.arg(v);
        self
    }

    /// Enqueues the launch.
    ///
    /// # Safety
    /// The arguments must match the kernel's parameters, and the buffers must be large enough for
    /// what the kernel indexes.
    pub unsafe fn run(&mut self, grid: u32, block: u32, dynamic_smem: u32) -> GpuResult<()> {
        self.run_3d((grid, 1, 1), block, dynamic_smem)
    }

    /// [`Launch::run`] with a 3-D grid.
    ///
    /// # Safety
    /// As for [`Launch::run`].
    pub unsafe fn run_3d(
        &mut self,
        grid: (u32, u32, u32),
        block: u32,
        dynamic_smem: u32,
    ) -> GpuResult<()> {
        let cfg = LaunchConfig {
            grid_dim: (grid.0.max(1), grid.1.max(1), grid.2.max(1)),
            block_dim: (block, 1, 1),
            shared_mem_bytes: dynamic_smem,
        };
        self.args
            .launch(cfg)
            .map(|_| ())
            .map_err(|source| GpuError::Launch {
                kernel: self.kernel.to_string(),
                source,
            })
    }
}

/// Device memory for `len` elements of `T`.
pub struct Buffer<T> {
    slice: CudaSlice<T>,
    len: usize,
}

impl<T> Buffer<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    pub fn bytes(&self) -> u64 {
        (self.len * std::mem::size_of::<T>()) as u64
    }

    /// The buffer's device address, for arguments that embed it (TMA tensor maps, structs).
    /// The address stays valid while the buffer lives; the caller orders its use on `gpu`'s
    /// stream, which is the only stream roofbench uses.
    pub fn device_address(&self, gpu: &Gpu) -> u64 {
        self.slice.device_ptr(&gpu.stream).0
    }
}

/// Page-locked host memory (see [`Gpu::alloc_pinned`]).
pub struct PinnedHost<T> {
    slice: cudarc::driver::PinnedHostSlice<T>,
    len: usize,
}

impl<T: DeviceRepr + ValidAsZeroBits> PinnedHost<T> {
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The host view; waits for pending copies into it.
    pub fn as_slice(&self) -> GpuResult<&[T]> {
        Ok(&self.slice.as_slice().ctx("cuEventSynchronize")?[..self.len])
    }
    pub fn as_mut_slice(&mut self) -> GpuResult<&mut [T]> {
        let len = self.len;
        Ok(&mut self.slice.as_mut_slice().ctx("cuEventSynchronize")?[..len])
    }
}

impl<T: ValidAsZeroBits> PinnedHost<T> {
    /// The address a kernel uses for this memory: every access crosses the host link.
    pub fn device_address(&self) -> GpuResult<u64> {
        let host = self.slice.as_ptr().ctx("cuMemHostAlloc")? as *mut std::ffi::c_void;
        let mut address: sys::CUdeviceptr = 0;
        // SAFETY: `host` is a live page-locked allocation made with CU_MEMHOSTALLOC_DEVICEMAP.
        unsafe { sys::cuMemHostGetDevicePointer_v2(&mut address, host, 0) }
            .result()
            .ctx("cuMemHostGetDevicePointer")?;
        Ok(address)
    }
}

/// Which way [`Gpu::copy_ranges`] copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    DeviceToHost,
    HostToDevice,
}

/// A CUDA event created with timing enabled.
pub struct Event {
    event: cudarc::driver::CudaEvent,
}

impl Event {
    /// GPU milliseconds from `self` to `end` (waits for both).
    pub fn elapsed_ms(&self, end: &Event) -> GpuResult<f64> {
        self.event
            .elapsed_ms(&end.event)
            .map(f64::from)
            .ctx("cuEventElapsedTime")
    }
}

/// An instantiated CUDA graph on the device's stream.
pub struct Graph {
    graph: cudarc::driver::CudaGraph,
}

impl Graph {
    pub fn launch(&self) -> GpuResult<()> {
        self.graph.launch().ctx("cuGraphLaunch")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_stable_file_names() {
        assert_eq!(gpu_slug("NVIDIA H100 80GB HBM3"), "h100-80gb-hbm3");
        assert_eq!(gpu_slug("NVIDIA GeForce RTX 4090"), "geforce-rtx-4090");
        assert_eq!(gpu_slug("NVIDIA A100-SXM4-80GB"), "a100-sxm4-80gb");
    }

    #[test]
    fn no_driver_is_an_error_not_a_panic() {
        // On machines without libcuda (CI), opening a device must report it cleanly.
        // SAFETY: only probes for the library.
        if !unsafe { sys::is_culib_present() } {
            let err = Gpu::open(0).err().expect("no driver, so no device");
            assert!(matches!(err, GpuError::NoDriver), "{err}");
            assert!(err.to_string().contains("no CUDA driver"));
        }
    }
}
