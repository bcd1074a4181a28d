use super::*;

#[test]
fn element_sizes() {
    use LtPrecision::*;
    assert_eq!(
        (Bf16.input_bytes(), Bf16.output_bytes()),
        (2, 2),
        "bf16 in, bf16 out"
    );
    assert_eq!((Fp8E4m3.input_bytes(), Fp8E4m3.output_bytes()), (1, 2));
    assert_eq!((Int8.input_bytes(), Int8.output_bytes()), (1, 4));
    let names: Vec<_> = LtPrecision::ALL.iter().map(|p| p.name()).collect();
    assert_eq!(names, ["bf16", "fp8-e4m3", "int8"]);
}

#[test]
fn fp8_runs_both_accumulations_with_distinct_labels() {
    use LtAccumulation::*;
    assert_eq!(LtPrecision::Fp8E4m3.accumulations(), [Default, Fast]);
    assert_eq!(LtPrecision::Bf16.accumulations(), [Default]);
    assert_eq!(LtPrecision::Int8.accumulations(), [Default]);
    // The default keeps the label rows have always had.
    assert_eq!(
        variant_label(LtPrecision::Fp8E4m3, Default),
        "cublasLt fp8-e4m3"
    );
    assert_eq!(
        variant_label(LtPrecision::Fp8E4m3, Fast),
        "cublasLt fp8-e4m3 fast-accum"
    );
    for precision in LtPrecision::ALL {
        for &a in precision.accumulations() {
            assert_eq!(label_accumulation(&variant_label(precision, a)), a);
        }
    }
    assert_eq!(label_accumulation("cublasLt bf16"), Default);
}

#[test]
fn operand_bytes_follow_the_shape() {
    let bytes = check_shape(LtPrecision::Int8, 8, 3, 12).unwrap();
    assert_eq!(
        bytes,
        LtOperandBytes {
            a: 96,
            b: 36,
            d: 96
        }
    );
    let bytes = check_shape(LtPrecision::Fp8E4m3, 16, 5, 32).unwrap();
    assert_eq!(
        bytes,
        LtOperandBytes {
            a: 512,
            b: 160,
            d: 160
        }
    );
    let bytes = check_shape(LtPrecision::Bf16, 3, 5, 7).unwrap();
    assert_eq!(
        bytes,
        LtOperandBytes {
            a: 42,
            b: 70,
            d: 30
        }
    );
}

#[test]
fn shapes_cublaslt_cannot_run_are_rejected() {
    let rejected = |p, m, n, k| match check_shape(p, m, n, k) {
        Err(GpuError::LtUnsupported { reason, .. }) => reason,
        other => panic!("{p} {m}x{n}x{k} accepted: {other:?}"),
    };
    assert!(
        rejected(LtPrecision::Int8, 64, 64, 30).contains("k (lda = ldb) must be a multiple of 4")
    );
    assert!(
        rejected(LtPrecision::Int8, 62, 64, 64).contains("m (ldc = ldd) must be a multiple of 4")
    );
    assert!(rejected(LtPrecision::Fp8E4m3, 64, 64, 40).contains("multiple of 16"));
    assert!(rejected(LtPrecision::Fp8E4m3, 40, 64, 64).contains("multiple of 16"));
    assert!(rejected(LtPrecision::Bf16, 0, 64, 64).contains("at least 1"));
    assert!(rejected(LtPrecision::Bf16, usize::MAX / 2, 1, 4).contains("overflows"));
    // n is no leading dimension: any n is fine.
    assert!(check_shape(LtPrecision::Int8, 64, 7, 64).is_ok());
    assert!(check_shape(LtPrecision::Fp8E4m3, 64, 3, 64).is_ok());
    let err = check_shape(LtPrecision::Int8, 64, 64, 30)
        .unwrap_err()
        .to_string();
    assert!(err.contains("int8") && err.contains("k=30"), "{err}");
}

/// Without libcublasLt (or without a driver) every entry point reports it; nothing panics.
#[test]
fn missing_library_is_an_error_not_a_panic() {
    // SAFETY: only probes for the library.
    let present = unsafe { sys::is_culib_present() };
    match ensure_cublaslt() {
        Ok(()) => assert!(present),
        Err(err) => {
            assert!(!present && matches!(err, GpuError::NoCublasLt), "{err}");
            assert!(err.to_string().contains("libcublasLt"));
        }
    }
    if let Ok(gpu) = Gpu::open(0) {
        match gpu.cublaslt() {
            Err(err) => assert!(!present && matches!(err, GpuError::NoCublasLt), "{err}"),
            Ok(lt) => assert!(lt.plan(&gpu, LtPrecision::Int8, 64, 64, 30).is_err()),
        }
    }
}

/// Small integers are exact in bf16, fp8 e4m3 and i8, and so are their dot products over
/// k = 64 (|sum| <= 256), so every precision must reproduce the host product exactly. m != n
/// and asymmetric inputs make a transposed or swapped operand show as a mismatch; D is
/// poisoned first (bf16 NaN pairs, an impossible i32) so a GEMM that writes nothing fails.
#[test]
#[ignore = "needs a CUDA GPU and libcublasLt"]
fn small_gemms_match_the_host() {
    let gpu = Gpu::open(0).expect("this test needs a CUDA GPU");
    let lt = gpu.cublaslt().expect("this test needs libcublasLt");
    let (m, n, k) = (64usize, 48usize, 64usize);
    let value = |i: usize, salt: usize| ((i * 7 + salt * 3 + i / 5) % 5) as i32 - 2;
    let a: Vec<i32> = (0..m * k).map(|i| value(i, 1)).collect(); // row-major m x k
    let b: Vec<i32> = (0..k * n).map(|i| value(i, 2)).collect(); // column-major k x n
    let (major, minor) = gpu.info().compute_capability;
    for precision in LtPrecision::ALL {
        if precision == LtPrecision::Fp8E4m3 && (major, minor) < (8, 9) {
            continue;
        }
        let encode = |v: &[i32]| -> Vec<u8> {
            v.iter()
                .flat_map(|&x| match precision {
                    LtPrecision::Bf16 => half::bf16::from_f32(x as f32).to_le_bytes().to_vec(),
                    // e4m3: sign, 4 exponent bits (bias 7), 3 mantissa bits: 1.0 = 0x38.
                    LtPrecision::Fp8E4m3 => {
                        let mag = [0x00u8, 0x38, 0x40][x.unsigned_abs() as usize];
                        vec![if x < 0 { mag | 0x80 } else { mag }]
                    }
                    LtPrecision::Int8 => vec![x as i8 as u8],
                })
                .collect()
        };
        let mut plan = lt.plan(&gpu, precision, m, n, k).expect("plan");
        let da = gpu.upload(&encode(&a)).unwrap();
        let db = gpu.upload(&encode(&b)).unwrap();
        let mut dd = gpu.alloc::<u8>(plan.operand_bytes().d).unwrap();
        gpu.memset_u32(&mut dd, 0x7fc0_7fc0).unwrap();
        plan.run(&gpu, &da, &db, &mut dd).expect("run");
        let out = gpu.download(&dd).unwrap();
        for j in 0..n {
            for i in 0..m {
                let want: i32 = (0..k).map(|p| a[i * k + p] * b[j * k + p]).sum();
                let at = i + j * m;
                let got = match precision {
                    LtPrecision::Int8 => f64::from(i32::from_le_bytes(
                        out[4 * at..4 * at + 4].try_into().unwrap(),
                    )),
                    _ => f64::from(
                        half::bf16::from_le_bytes([out[2 * at], out[2 * at + 1]]).to_f32(),
                    ),
                };
                assert_eq!(got, f64::from(want), "{precision} D[{i},{j}]");
            }
        }
        let mut short = gpu.alloc::<u8>(plan.operand_bytes().d - 1).unwrap();
        assert!(matches!(
            plan.run(&gpu, &da, &db, &mut short),
            Err(GpuError::LtArgument(_))
        ));
    }
}

#[test]
fn host_scale_lengths_follow_roofbench_layouts() {
    // lt_m = 300 (3 blocks of 128), lt_n = 5, k = 130 (2 K groups).
    assert_eq!(LtScaling::None.host_scale_lens(300, 5, 130), (0, 0));
    assert_eq!(LtScaling::PerTensor.host_scale_lens(300, 5, 130), (1, 1));
    assert_eq!(LtScaling::Outer.host_scale_lens(300, 5, 130), (300, 5));
    assert_eq!(
        LtScaling::Block128.host_scale_lens(300, 5, 130),
        (3 * 2, 5 * 2)
    );
    assert_eq!(LtScaling::Block128.host_scale_lens(128, 1, 128), (1, 1));
    let names: Vec<_> = LtScaling::ALL.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, ["none", "per-tensor", "outer", "block128"]);
}

/// VEC128: roofbench's [outer][kb] becomes [kb][outer] (outer fastest), nothing padded.
#[test]
fn vec128_scales_are_transposed_to_outer_major() {
    let (outer, k) = (3, 300); // 3 K groups, the last partial
    let host: Vec<f32> = (0..outer * 3)
        .map(|i| (10 * (i / 3) + i % 3) as f32)
        .collect();
    // host[o][g] = 10 o + g
    assert_eq!(host, [0., 1., 2., 10., 11., 12., 20., 21., 22.]);
    let lt = vec128_scales_to_lt(&host, outer, k);
    assert_eq!(lt, [0., 10., 20., 1., 11., 21., 2., 12., 22.]);
    // One K group: the layouts coincide.
    let single = [1.0, 2.0, 3.0, 4.0, 5.0];
    assert_eq!(vec128_scales_to_lt(&single, 5, 16), single);
    assert!(vec128_scales_to_lt(&[], 0, 128).is_empty());
}

/// BLK128x128: roofbench's [outer blocks][kb] keeps its order; each row is padded to a
/// multiple of 4 K blocks.
#[test]
fn blk128_scales_are_padded_to_four_k_blocks() {
    // outer = 300 -> 3 row blocks; k = 130 -> 2 K blocks, padded to 4.
    let host: Vec<f32> = (0..6).map(|i| (10 * (i / 2) + i % 2 + 1) as f32).collect();
    let lt = blk128_scales_to_lt(&host, 300, 130);
    #[rustfmt::skip]
    assert_eq!(lt, [
        1., 2., 0., 0.,
        11., 12., 0., 0.,
        21., 22., 0., 0.,
    ]);
    // 5 K blocks -> 8 per row; one row block (outer = 16).
    let host: Vec<f32> = (1..=5).map(|v| v as f32).collect();
    assert_eq!(
        blk128_scales_to_lt(&host, 16, 600),
        [1., 2., 3., 4., 5., 0., 0., 0.]
    );
    // 4 K blocks need no padding: the layouts coincide.
    let host: Vec<f32> = (0..8).map(|v| v as f32).collect();
    assert_eq!(blk128_scales_to_lt(&host, 129, 512), host);
}

#[test]
fn scale_arrays_check_lengths_and_convert() {
    let (m, n, k) = (144, 3, 160);
    // None: no pointers; scales given with None are a mistake.
    assert_eq!(lt_scale_arrays(LtScaling::None, m, n, k, None), Ok(None));
    let one = [1.0f32];
    let err = lt_scale_arrays(
        LtScaling::None,
        m,
        n,
        k,
        Some(LtScales { a: &one, b: &one }),
    )
    .unwrap_err();
    assert!(err.contains("LtScaling::None"), "{err}");
    // No values: every scale 1.0, in cuBLASLt's (padded) sizes.
    let LtScaleArrays { a, b } = lt_scale_arrays(LtScaling::Block128, m, n, k, None)
        .unwrap()
        .unwrap();
    assert_eq!((a.len(), b.len()), (2 * 4, 2 * 3));
    assert_eq!(a, [1., 1., 0., 0., 1., 1., 0., 0.]);
    assert!(b.iter().all(|&s| s == 1.0));
    let LtScaleArrays { a, b } = lt_scale_arrays(LtScaling::PerTensor, m, n, k, None)
        .unwrap()
        .unwrap();
    assert_eq!((a, b), (vec![1.0], vec![1.0]));
    // Outer: passed through.
    let a_outer: Vec<f32> = (0..m).map(|i| i as f32).collect();
    let b_outer = [0.5f32, 0.25, 2.0];
    let LtScaleArrays { a, b } = lt_scale_arrays(
        LtScaling::Outer,
        m,
        n,
        k,
        Some(LtScales {
            a: &a_outer,
            b: &b_outer,
        }),
    )
    .unwrap()
    .unwrap();
    assert_eq!((a, b), (a_outer.clone(), b_outer.to_vec()));
    // Block128: A padded, B transposed.
    let a_blocks = [1.0f32, 2.0, 3.0, 4.0]; // [2 row blocks][2 K blocks]
    let b_groups = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0]; // [3 rows][2 K groups]
    let LtScaleArrays { a, b } = lt_scale_arrays(
        LtScaling::Block128,
        m,
        n,
        k,
        Some(LtScales {
            a: &a_blocks,
            b: &b_groups,
        }),
    )
    .unwrap()
    .unwrap();
    assert_eq!(a, [1., 2., 0., 0., 3., 4., 0., 0.]);
    assert_eq!(b, [1., 3., 5., 2., 4., 6.]);
    // Wrong lengths name the operand and the expected count.
    let err = lt_scale_arrays(
        LtScaling::Outer,
        m,
        n,
        k,
        Some(LtScales {
            a: &a_outer[..10],
            b: &b_outer,
        }),
    )
    .unwrap_err();
    assert!(err.contains("A has 10 values, expected 144"), "{err}");
    let err = lt_scale_arrays(
        LtScaling::Block128,
        m,
        n,
        k,
        Some(LtScales {
            a: &a_blocks,
            b: &b_groups[..3],
        }),
    )
    .unwrap_err();
    assert!(err.contains("B has 3 values, expected 6"), "{err}");
    let err = lt_scale_arrays(
        LtScaling::PerTensor,
        m,
        n,
        k,
        Some(LtScales { a: &[], b: &one }),
    )
    .unwrap_err();
    assert!(
        err.contains("per-tensor") && err.contains("expected 1"),
        "{err}"
    );
}

#[test]
fn supported_combinations_follow_nvidia_docs() {
    use LtPrecision::*;
    let (ada, hopper, blackwell, ampere) = ((8, 9), (9, 0), (10, 0), (8, 6));
    for scaling in LtScaling::ALL {
        assert_eq!(
            lt_supports(Bf16, scaling, ampere),
            Ok(()),
            "bf16 ignores {scaling}"
        );
    }
    assert_eq!(lt_supports(Int8, LtScaling::None, ampere), Ok(()));
    for scaling in [LtScaling::PerTensor, LtScaling::Outer, LtScaling::Block128] {
        let err = lt_supports(Int8, scaling, hopper).unwrap_err();
        assert!(err.contains("INT8 GEMMs take no scales"), "{err}");
        assert!(err.contains(scaling.name()), "{err}");
    }
    let err = lt_supports(Fp8E4m3, LtScaling::PerTensor, ampere).unwrap_err();
    assert!(err.contains("sm_89") && err.contains("sm_86"), "{err}");
    for arch in [ada, hopper, blackwell] {
        assert_eq!(lt_supports(Fp8E4m3, LtScaling::None, arch), Ok(()));
        assert_eq!(lt_supports(Fp8E4m3, LtScaling::PerTensor, arch), Ok(()));
    }
    let err = lt_supports(Fp8E4m3, LtScaling::Outer, ada).unwrap_err();
    assert!(err.contains("sm_90") && err.contains("sm_89"), "{err}");
    assert_eq!(lt_supports(Fp8E4m3, LtScaling::Outer, hopper), Ok(()));
    assert_eq!(lt_supports(Fp8E4m3, LtScaling::Outer, blackwell), Ok(()));
    assert_eq!(lt_supports(Fp8E4m3, LtScaling::Block128, hopper), Ok(()));
    assert_eq!(lt_supports(Fp8E4m3, LtScaling::Block128, (9, 1)), Ok(()));
    for arch in [ada, blackwell, (12, 0)] {
        let err = lt_supports(Fp8E4m3, LtScaling::Block128, arch).unwrap_err();
        assert!(err.contains("Hopper (sm_90) only"), "{err}");
    }
}

#[test]
fn vector_scales_need_cublaslt_12_9() {
    let err = lt_version_supports(LtScaling::Block128, 120_803).unwrap_err();
    assert!(err.contains("12.9") && err.contains("12.8.3"), "{err}");
    assert!(lt_version_supports(LtScaling::Outer, 120_000).is_err());
    for version in [120_900, 120_901, 130_000, 130_100] {
        assert_eq!(lt_version_supports(LtScaling::Outer, version), Ok(()));
        assert_eq!(lt_version_supports(LtScaling::Block128, version), Ok(()));
    }
    assert_eq!(lt_version_supports(LtScaling::PerTensor, 110_800), Ok(()));
    assert_eq!(lt_version_supports(LtScaling::None, 110_800), Ok(()));
}

#[test]
fn errors_name_the_scale_mode() {
    assert_eq!(
        plan_label(LtPrecision::Fp8E4m3, LtScaling::PerTensor),
        "fp8-e4m3"
    );
    assert!(plan_label(LtPrecision::Fp8E4m3, LtScaling::Block128).contains("128-block"));
    assert!(plan_label(LtPrecision::Fp8E4m3, LtScaling::Outer).contains("outer"));
    assert_eq!(plan_label(LtPrecision::Int8, LtScaling::None), "int8");
}

/// The scaled FP8 modes and the bias epilogue against an exact host product: FP8 codes are
/// small integers and every scale a power of two, so each f32 partial sum and its scaled
/// total are exact and D must equal the host value rounded once to bf16. Scales that vary
/// by row, column and K block make a transposed or mis-padded scale layout show as a
/// mismatch; lt_m = 144 and k = 160 give two 128-blocks each (the second partial), and
/// lt_n is 40 and then 37 (no multiple of 4: VEC128's activation scales are read unpadded,
/// with a column stride of lt_n). Modes the GPU or library cannot run are skipped (with a
/// message); on an H100 with cuBLASLt 12.9+ every case runs, except that a heuristic that
/// refuses a bias with 128-block scales is reported, not failed.
#[test]
#[ignore = "needs a CUDA GPU and libcublasLt"]
fn scaled_fp8_and_bias_gemms_match_the_host() {
    /// One plan to check: `scale_of(i, j, g)` is the scale product of D[i][j]'s K group g.
    struct Case<'s> {
        precision: LtPrecision,
        scaling: LtScaling,
        scales: Option<LtScales<'s>>,
        bias: bool,
        /// The heuristic may refuse it (LtUnsupported is then reported, not a failure).
        optional: bool,
        scale_of: Box<dyn Fn(usize, usize, usize) -> f32 + 's>,
    }
    let gpu = Gpu::open(0).expect("this test needs a CUDA GPU");
    let lt = gpu.cublaslt().expect("this test needs libcublasLt");
    let arch = gpu.info().compute_capability;
    // SAFETY: the library is loaded (`lt` exists).
    let version = unsafe { sys::cublasLtGetVersion() };
    let pow2 = |e: i32| 2f32.powi(e);
    let e4m3 = |v: &[i32]| -> Vec<u8> {
        v.iter()
            .map(|&x| {
                // 0, 1.0 (0x38), 2.0 (0x40); bit 7 is the sign.
                let mag = [0x00u8, 0x38, 0x40][x.unsigned_abs() as usize];
                if x < 0 {
                    mag | 0x80
                } else {
                    mag
                }
            })
            .collect()
    };
    let bf16 = |v: &[i32]| -> Vec<u8> {
        v.iter()
            .flat_map(|&x| half::bf16::from_f32(x as f32).to_le_bytes())
            .collect()
    };
    let (m, k) = (144usize, 160usize);
    let kb = k.div_ceil(128);
    let value = |i: usize, salt: usize| ((i * 7 + salt * 3 + i / 5) % 5) as i32 - 2;
    let bias: Vec<f32> = (0..m).map(|i| (i % 7) as f32 - 3.0).collect();
    let bias_bits: Vec<u16> = bias
        .iter()
        .map(|&v| half::bf16::from_f32(v).to_bits())
        .collect();
    let d_bias = gpu.upload(&bias_bits).unwrap();
    // Host scales of A in roofbench's layouts: per row (outer), per 128x128 block.
    let outer_a: Vec<f32> = (0..m).map(|i| pow2((i % 3) as i32 - 1)).collect();
    let blk_a: Vec<f32> = (0..m.div_ceil(128) * kb)
        .map(|i| pow2(((i / kb) + 2 * (i % kb)) as i32 % 3 - 1))
        .collect();
    let mut ran = 0;
    for n in [40usize, 37] {
        let a: Vec<i32> = (0..m * k).map(|i| value(i, 1)).collect(); // row-major m x k
        let b: Vec<i32> = (0..k * n).map(|i| value(i, 2)).collect(); // column-major k x n
                                                                     // Host scales of B: per column (outer), per row and 128-group of K.
        let outer_b: Vec<f32> = (0..n).map(|j| pow2((j % 5) as i32 - 2)).collect();
        let grp_b: Vec<f32> = (0..n * kb)
            .map(|i| pow2(((i / kb) + 3 * (i % kb)) as i32 % 4 - 2))
            .collect();
        let (outer_a, outer_b, blk_a, grp_b) = (&outer_a, &outer_b, &blk_a, &grp_b);
        let per_tensor = Some(LtScales {
            a: &[2.0],
            b: &[0.5],
        });
        let block = Some(LtScales { a: blk_a, b: grp_b });
        let block_of =
            move |i: usize, j: usize, g: usize| blk_a[(i / 128) * kb + g] * grp_b[j * kb + g];
        let cases = [
            Case {
                precision: LtPrecision::Bf16,
                scaling: LtScaling::None,
                scales: None,
                bias: true,
                optional: false,
                scale_of: Box::new(|_, _, _| 1.0),
            },
            Case {
                precision: LtPrecision::Fp8E4m3,
                scaling: LtScaling::PerTensor,
                scales: per_tensor,
                bias: false,
                optional: false,
                scale_of: Box::new(|_, _, _| 1.0),
            },
            Case {
                precision: LtPrecision::Fp8E4m3,
                scaling: LtScaling::PerTensor,
                scales: per_tensor,
                bias: true,
                optional: false,
                scale_of: Box::new(|_, _, _| 1.0),
            },
            Case {
                precision: LtPrecision::Fp8E4m3,
                scaling: LtScaling::Outer,
                scales: Some(LtScales {
                    a: outer_a,
                    b: outer_b,
                }),
                bias: false,
                optional: false,
                scale_of: Box::new(move |i, j, _| outer_a[i] * outer_b[j]),
            },
            Case {
                precision: LtPrecision::Fp8E4m3,
                scaling: LtScaling::Block128,
                scales: block,
                bias: false,
                optional: false,
                scale_of: Box::new(block_of),
            },
            Case {
                precision: LtPrecision::Fp8E4m3,
                scaling: LtScaling::Block128,
                scales: block,
                bias: true,
                optional: true,
                scale_of: Box::new(block_of),
            },
        ];
        for case in cases {
            let Case {
                precision,
                scaling,
                bias: with_bias,
                ..
            } = case;
            let label = format!("{precision} {scaling} n={n} bias={with_bias}");
            let supported = lt_supports(precision, scaling, arch).and_then(|()| match precision {
                LtPrecision::Fp8E4m3 => lt_version_supports(scaling, version),
                _ => Ok(()),
            });
            if let Err(why) = supported {
                eprintln!("skipping {label}: {why}");
                continue;
            }
            let planned = lt.plan_scaled(
                &gpu,
                precision,
                m,
                n,
                k,
                scaling,
                case.scales,
                with_bias,
                LtAccumulation::Default,
            );
            let mut plan = match planned {
                Ok(plan) => plan,
                Err(e @ GpuError::LtUnsupported { .. }) if case.optional => {
                    eprintln!("cuBLASLt refuses {label}: {e}");
                    continue;
                }
                Err(e) => panic!("plan {label}: {e}"),
            };
            assert_eq!(plan.has_bias(), with_bias);
            let encode = if precision == LtPrecision::Bf16 {
                bf16
            } else {
                e4m3
            };
            let da = gpu.upload(&encode(&a)).unwrap();
            let db = gpu.upload(&encode(&b)).unwrap();
            let mut dd = gpu.alloc::<u8>(plan.operand_bytes().d).unwrap();
            // bf16 NaN pairs (2 * 144 * n bytes is a multiple of 4).
            gpu.memset_u32(&mut dd, 0x7fc0_7fc0).unwrap();
            if with_bias {
                assert!(matches!(
                    plan.run(&gpu, &da, &db, &mut dd),
                    Err(GpuError::LtArgument(_))
                ));
                plan.run_with_bias(&gpu, &da, &db, &mut dd, Some(&d_bias))
            } else {
                plan.run(&gpu, &da, &db, &mut dd)
            }
            .unwrap_or_else(|e| panic!("run {label}: {e}"));
            let out = gpu.download(&dd).unwrap();
            for j in 0..n {
                for i in 0..m {
                    let mut want = if with_bias { bias[i] } else { 0.0f32 };
                    for g in 0..kb {
                        let partial: i32 = (g * 128..k.min(g * 128 + 128))
                            .map(|p| a[i * k + p] * b[j * k + p])
                            .sum();
                        want += partial as f32 * (case.scale_of)(i, j, g);
                    }
                    let at = i + j * m;
                    let got = half::bf16::from_le_bytes([out[2 * at], out[2 * at + 1]]);
                    assert_eq!(
                        got.to_bits(),
                        half::bf16::from_f32(want).to_bits(),
                        "{label} D[{i},{j}]: got {got}, want {want}"
                    );
                }
            }
            ran += 1;
        }
    }
    assert!(ran > 0, "no case ran");
    // Arguments cuBLASLt never sees.
    let (m, n, k) = (144, 40, 160);
    let int8 = |bias, accumulation| {
        lt.plan_scaled(
            &gpu,
            LtPrecision::Int8,
            64,
            64,
            64,
            LtScaling::None,
            None,
            bias,
            accumulation,
        )
    };
    assert!(matches!(
        int8(true, LtAccumulation::Default),
        Err(GpuError::LtUnsupported { .. })
    ));
    // Fast accumulation is an FP8 flag.
    assert!(matches!(
        int8(false, LtAccumulation::Fast),
        Err(GpuError::LtUnsupported { reason, .. }) if reason.contains("Fast")
    ));
    if arch >= (8, 9) {
        let short = [1.0f32; 3];
        assert!(matches!(
            lt.plan_scaled(
                &gpu,
                LtPrecision::Fp8E4m3,
                m,
                n,
                k,
                LtScaling::PerTensor,
                Some(LtScales {
                    a: &short,
                    b: &short
                }),
                false,
                LtAccumulation::Default
            ),
            Err(GpuError::LtArgument(_))
        ));
    }
}
