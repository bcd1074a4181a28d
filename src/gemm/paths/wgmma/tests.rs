/// `setmaxnreg` moves registers within the CTA's allocation, which is fixed at launch by
/// the kernel's register count: the producer's 40 and the consumers' 232 balance only at
/// 168 per thread (40·128 + 232·256 = 168·384). A kernel compiled to fewer registers would block forever in
/// `setmaxnreg.inc`, so the build's ptxas report must say exactly 168 on sm_90a.
#[test]
fn every_kernel_holds_the_register_pool_setmaxnreg_redistributes() {
    if crate::gpu::MODULES.is_empty() {
        return; // built without nvcc
    }
    for name in kernel_names() {
        let module = crate::gpu::embedded::module_of(&name)
            .unwrap_or_else(|| panic!("{name} is not embedded"));
        let report = module
            .kernels
            .iter()
            .find(|r| r.kernel == name && r.target == "sm_90a")
            .unwrap_or_else(|| panic!("{name} has no sm_90a report"));
        assert_eq!(report.registers, 168, "{name}: {report:?}");
        assert!(!report.spills(), "{name} spills: {report:?}");
    }
}

use super::*;
use crate::gemm::quant::Scheme;

const HOPPER: Arch = (9, 0);

fn problem(m: usize, n: usize, k: usize, inputs: Inputs, scheme: Option<Scheme>) -> Problem {
    Problem {
        m,
        n,
        k,
        inputs,
        scheme,
        bias: false,
    }
}

fn fp8(m: usize, n: usize, k: usize, scheme: Scheme) -> Problem {
    problem(m, n, k, Inputs::Quantized(QuantFormat::E4m3), Some(scheme))
}

#[test]
fn picks_the_kernel_and_tile_of_each_input() {
    let path = WgmmaPath::STANDARD;
    let v = path
        .variant(&problem(8192, 8192, 8192, Inputs::Bf16, None))
        .unwrap();
    assert_eq!(v.kernel, "gemm_wgmma_bf16");
    assert_eq!((v.tile.bn, v.tile.bk(), v.tile.stages), (256, 64, 4));
    for (format, tag) in [
        (QuantFormat::E4m3, "e4m3"),
        (QuantFormat::E5m2, "e5m2"),
        (QuantFormat::Int8, "s8"),
    ] {
        for scheme in [Scheme::PerTensor, Scheme::PerTokenPerChannel] {
            let v = path
                .variant(&problem(
                    7,
                    200,
                    80,
                    Inputs::Quantized(format),
                    Some(scheme),
                ))
                .unwrap();
            assert_eq!(v.kernel, format!("gemm_wgmma_{tag}"));
            assert_eq!((v.tile.bn, v.tile.bk()), (256, 128));
        }
        let v = path
            .variant(&problem(
                7,
                200,
                80,
                Inputs::Quantized(format),
                Some(Scheme::Block128),
            ))
            .unwrap();
        assert_eq!(v.kernel, format!("gemm_wgmma_{tag}_block128"));
        assert_eq!((v.tile.bn, v.tile.bk(), v.tile.stages), (128, 128, 6));
    }
    let promoted = WgmmaPath::PROMOTED
        .variant(&fp8(33, 200, 4112, Scheme::PerTokenPerChannel))
        .unwrap();
    assert_eq!(promoted.kernel, "gemm_wgmma_e4m3_promoted");
    assert_eq!(promoted.tile.bn, 128);
    // Block-128 on the promoted path is the block kernel (it promotes anyway).
    assert!(WgmmaPath::PROMOTED
        .variant(&fp8(33, 200, 4112, Scheme::Block128))
        .is_err());
}

#[test]
fn every_kernel_is_listed_once() {
    let mut all = kernel_names();
    assert_eq!(all.len(), 8);
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 8);
    let mut both = WgmmaPath::STANDARD.kernel_names();
    both.extend(WgmmaPath::PROMOTED.kernel_names());
    both.sort();
    assert_eq!(both, all);
}

#[test]
fn rejects_what_it_cannot_run_with_the_reason() {
    let path = WgmmaPath::STANDARD;
    let ok = problem(64, 64, 64, Inputs::Bf16, None);
    assert_eq!(path.supports(&ok, HOPPER), Ok(()));
    let err = |p: &Problem, arch| path.supports(p, arch).unwrap_err();
    assert!(err(&ok, (10, 0)).contains("needs sm_90a (Hopper)"));
    assert!(err(&ok, (8, 0)).contains("sm_80"));
    let weight_only = problem(
        1,
        64,
        64,
        Inputs::WeightOnly(QuantFormat::E4m3),
        Some(Scheme::PerTokenPerChannel),
    );
    assert!(err(&weight_only, HOPPER)
        .contains("weight-only GEMMs run on the small_m (M <= 64) and mma paths"));
    let e = err(&problem(64, 64, 100, Inputs::Bf16, None), HOPPER);
    assert!(
        e.contains("K must be a multiple of 8") && e.contains("K = 100"),
        "{e}"
    );
    let e = err(&fp8(64, 64, 72, Scheme::PerTensor), HOPPER);
    assert!(
        e.contains("K must be a multiple of 16") && e.contains("K = 72"),
        "{e}"
    );
    assert_eq!(
        path.supports(&fp8(7, 200, 80, Scheme::Block128), HOPPER),
        Ok(())
    );
    assert!(err(&fp8(64, 64, 0, Scheme::PerTensor), HOPPER).contains("at least 1"));
    // INT8 per-tensor / per-token: int32 accumulation over all of K; block-128 is exempt.
    let max_k = super::super::mma::MAX_K_INT32 / 16 * 16;
    let int8 = |k, scheme| {
        problem(
            64,
            64,
            k,
            Inputs::Quantized(QuantFormat::Int8),
            Some(scheme),
        )
    };
    assert_eq!(
        path.supports(&int8(max_k, Scheme::PerTensor), HOPPER),
        Ok(())
    );
    let e = err(&int8(max_k + 16, Scheme::PerTokenPerChannel), HOPPER);
    assert!(
        e.contains("int32") && e.contains(&format!("K = {}", max_k + 16)),
        "{e}"
    );
    assert_eq!(
        path.supports(&int8(max_k + 16, Scheme::Block128), HOPPER),
        Ok(())
    );
    // FP8 has no such limit (f32 accumulators).
    assert_eq!(
        path.supports(&fp8(64, 64, max_k + 16, Scheme::PerTensor), HOPPER),
        Ok(())
    );
    let big = i32::MAX as usize + 1;
    assert!(err(&problem(big, 64, 64, Inputs::Bf16, None), HOPPER).contains("32 bits"));
    let e = WgmmaPath::PROMOTED
        .supports(&problem(64, 64, 64, Inputs::Bf16, None), HOPPER)
        .unwrap_err();
    assert!(e.contains("promoted path runs e4m3"), "{e}");
}

#[test]
fn geometry_fits_an_h100() {
    let h100 = crate::gpu::h100_example();
    for tile in [Tile::new(256, 2), Tile::new(256, 1), Tile::new(128, 1)] {
        assert!(
            tile.shared_bytes() <= h100.max_shared_per_block_optin,
            "{tile:?}: {} bytes",
            tile.shared_bytes()
        );
        // Stage buffers of 1024-byte multiples keep every swizzle atom aligned.
        assert_eq!(BM * ROW_BYTES % 1024, 0);
        assert_eq!(tile.bn * ROW_BYTES % 1024, 0);
    }
    assert_eq!(Tile::new(256, 1).shared_bytes(), 216_128);
    assert_eq!(Tile::new(128, 1).shared_bytes(), 216_160);
    let tile = Tile::new(256, 1);
    assert_eq!(tile.tiles(8192, 8192), 64 * 32);
    assert_eq!(tile.grid(8192, 8192, h100.sms), 132);
    assert_eq!(tile.tiles(7, 200), 1);
    assert_eq!(tile.grid(7, 200, h100.sms), 1);
    assert_eq!(tile.grid(0, 200, h100.sms), 0);
    assert_eq!(Tile::new(128, 1).tiles(257, 129), 3 * 2);
}
