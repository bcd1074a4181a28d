//! The verify set against faults injected into the CPU reference: each fault a plausible kernel
//! bug (no soft-cap, a 2% softmax-scale error, one key dropped or duplicated, a window off by
//! one, one split weighed twice in the merge), applied to a copy of the reference through its
//! [`RowSpec`], on the inputs a GPU verification would upload. At least one case of the verify
//! set must reject each, while an emulation of the kernel's own roundings passes every case:
//! the bound is tight enough to catch the bugs and loose enough for correct kernels.

use std::sync::OnceLock;

use super::config::{AttentionConfig, Data};
use super::inputs::CaseInputs;
use super::reference::{
    compare, decode_reference, decode_reference_with, Arithmetic, RowReference, RowSpec,
};
use super::verify_specs;

/// The SM count of an H100 SXM / H200: splits as a verification there cuts them.
const SMS: u32 = 132;
/// Cases whose reference costs more (the 128k context) are left out: seconds each on two cores
/// unoptimised, and the short cases already catch every fault.
const MAX_WORK: usize = 1 << 24;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    NoSoftcap,
    ScaleError,
    DropKey,
    DuplicateKey,
    WindowOffByOne,
    MergeWeight,
}

const FAULTS: [Fault; 6] = [
    Fault::NoSoftcap,
    Fault::ScaleError,
    Fault::DropKey,
    Fault::DuplicateKey,
    Fault::WindowOffByOne,
    Fault::MergeWeight,
];

impl Fault {
    /// Whether the bug can change case `c` at all (no cap to forget, no window to misplace, one
    /// split to weigh: the case cannot catch it, so it is not computed).
    fn applies(self, c: &AttentionConfig, splits: usize) -> bool {
        match self {
            Fault::NoSoftcap => c.softcap > 0.0,
            Fault::WindowOffByOne => c.window > 0,
            Fault::MergeWeight => splits > 1,
            _ => true,
        }
    }

    /// The row's spec as a kernel with this bug would compute it.
    fn inject(self, c: &AttentionConfig, splits: usize, ctx: usize, spec: &mut RowSpec) {
        let middle = spec.keys.len() / 2;
        match self {
            Fault::NoSoftcap => spec.softcap = 0.0,
            Fault::ScaleError => spec.softmax_scale *= 1.02,
            // (A row's only key stays: a kernel that loses it writes garbage, not a softmax.)
            Fault::DropKey => {
                if spec.keys.len() > 1 {
                    spec.keys.remove(middle);
                }
            }
            Fault::DuplicateKey => {
                if let Some(&k) = spec.keys.get(middle) {
                    spec.keys.push(k);
                }
            }
            // The key just before the window: a mask of `p - j <= window`.
            Fault::WindowOffByOne => {
                if let Some(&first) = spec.keys.first() {
                    if c.window > 0 && first > 0 {
                        spec.keys.insert(0, first - 1);
                    }
                }
            }
            // Merging w_s o_s with split 1's w doubled is the softmax with ln 2 added to the
            // scores of split 1's keys.
            Fault::MergeWeight => {
                let second = c.split_keys(ctx, splits, 1);
                spec.bias = spec
                    .keys
                    .iter()
                    .map(|k| if second.contains(k) { 2f64.ln() } else { 0.0 })
                    .collect();
            }
        }
    }
}

struct Checked {
    c: AttentionConfig,
    inputs: CaseInputs,
    splits: usize,
    rows: Vec<usize>,
    exact: Vec<RowReference>,
}

impl Checked {
    fn new(c: AttentionConfig, seed: u64) -> Checked {
        let inputs = CaseInputs::generate(&c, seed);
        let rows: Vec<usize> = (0..c.batch * c.q_len * c.q_heads).collect();
        let exact = decode_reference(&c, &inputs.layout, &inputs.host, &rows);
        Checked {
            splits: c.num_splits(SMS),
            c,
            inputs,
            rows,
            exact,
        }
    }

    /// The reference with each row's spec changed by `adjust`, stored in the q type as the
    /// kernel stores its output.
    fn output(&self, adjust: impl Fn(usize, &mut RowSpec) + Sync) -> Vec<Vec<f64>> {
        let x = &self.inputs;
        decode_reference_with(&self.c, &x.layout, &x.host, &self.rows, adjust)
            .into_iter()
            .map(|row| {
                let q = self.c.q_dtype;
                row.out
                    .iter()
                    .map(|&v| f64::from(q.round(v as f32)))
                    .collect()
            })
            .collect()
    }

    /// The first element of `got` outside the bound, as the GPU verification judges it.
    fn first_failure(&self, got: &[Vec<f64>]) -> Option<String> {
        let arithmetic = Arithmetic::of(&self.c, self.splits);
        compare(&self.rows, &self.exact, &arithmetic, |n, dd| got[n][dd]).first
    }

    fn ctx_of(&self, row: usize) -> usize {
        self.inputs.layout.context_lens[row / (self.c.q_heads * self.c.q_len)] as usize
    }
}

#[test]
fn faults_injected_into_the_reference_fail_the_verify_set() {
    let specs = verify_specs();
    let configs: Vec<AttentionConfig> = specs
        .iter()
        .map(|spec| AttentionConfig::parse(spec).unwrap())
        .filter(|c| {
            c.context_lens().iter().sum::<usize>() * c.q_len * c.q_heads * c.head_dim <= MAX_WORK
        })
        .collect();
    assert!(
        configs.len() + 1 >= specs.len(),
        "only the 128k case is left out"
    );
    // Inputs and exact references are made when a check first needs them: most faults are
    // caught by the first cases that can show them.
    let cases: Vec<OnceLock<Checked>> = configs.iter().map(|_| OnceLock::new()).collect();
    let case =
        |n: usize| cases[n].get_or_init(|| Checked::new(configs[n].clone(), 0x5eed + n as u64));

    // A correct kernel: q rounded to CT where it converts, P rounded to CT, the output to q's
    // type. One case of each kind (formats, data, soft-cap, scales) must accept it.
    let mut kinds = Vec::new();
    for (n, c) in configs.iter().enumerate() {
        let kind = (
            c.kv_dtype,
            c.q_dtype,
            c.data,
            c.softcap > 0.0,
            c.k_scale.is_empty(),
        );
        if kinds.contains(&kind) {
            continue;
        }
        kinds.push(kind);
        let case = case(n);
        let ct = Arithmetic::compute_type(c);
        let converts = ct != c.q_dtype;
        let emulated = case.output(|_, spec| {
            spec.round_q = converts.then_some(ct);
            spec.round_p = Some(ct);
        });
        if let Some(why) = case.first_failure(&emulated) {
            panic!("{}: the kernel's own roundings fail: {why}", c.name());
        }
    }

    for fault in FAULTS {
        let caught = (0..configs.len())
            .filter(|&n| fault.applies(&configs[n], configs[n].num_splits(SMS)))
            .find_map(|n| {
                let case = case(n);
                let faulty =
                    case.output(|r, spec| fault.inject(&case.c, case.splits, case.ctx_of(r), spec));
                case.first_failure(&faulty).map(|why| (case.c.name(), why))
            });
        match caught {
            Some((name, why)) => eprintln!("{fault:?}: rejected by {name} ({why})"),
            None => panic!("{fault:?} passes every case of the verify set"),
        }
    }
}

#[test]
fn random_data_alone_misses_what_peaked_data_catches() {
    // The finding, kept as a regression test: on random data (scores about ±0.3, where
    // tanh is linear) a missing soft-cap passes; the same case on peaked data rejects it.
    let caught = |data: Data| {
        let c = AttentionConfig {
            data,
            ..AttentionConfig::parse("lens=17:300:2049,heads=8/2,d=128,softcap=10").unwrap()
        };
        let case = Checked::new(c, 7);
        let faulty = case
            .output(|r, spec| Fault::NoSoftcap.inject(&case.c, case.splits, case.ctx_of(r), spec));
        case.first_failure(&faulty).is_some()
    };
    assert!(!caught(Data::Random));
    assert!(caught(Data::Peaked));
}
