use super::*;

fn params(policy: Policy, sinks: usize, recent: usize, pool_kernel: usize) -> PolicyParams {
    PolicyParams {
        sinks,
        recent,
        pool_kernel,
        ..PolicyParams::defaults(policy, 0)
    }
}

#[test]
fn names_parse_back() {
    for p in Policy::ALL {
        assert_eq!(Policy::parse(&p.name().to_uppercase()).unwrap(), p);
    }
    assert_eq!(Policy::parse("StreamingLLM").unwrap(), Policy::StreamingLlm);
    assert_eq!(Policy::parse("streaming").unwrap(), Policy::StreamingLlm);
    let err = Policy::parse("lru").unwrap_err().to_string();
    assert!(err.contains("snapkv"), "{err}");
}

#[test]
fn budgets_parse_and_round_up() {
    assert_eq!(Budget::parse("25%").unwrap(), Budget::Fraction(0.25));
    assert_eq!(Budget::parse("0.25").unwrap(), Budget::Fraction(0.25));
    assert_eq!(Budget::parse("1024").unwrap(), Budget::Tokens(1024));
    assert!(Budget::parse("150%").is_err());
    assert!(Budget::parse("1.5").is_err());
    assert!(Budget::parse("-0.1").is_err());
    assert!(Budget::parse("half").is_err());
    assert_eq!(Budget::Fraction(0.25).tokens(10), 3, "2.5 rounds up");
    assert_eq!(Budget::Fraction(1.0).tokens(10), 10);
    assert_eq!(Budget::Fraction(0.0).tokens(10), 0);
    assert_eq!(
        Budget::Fraction(0.07).tokens(100),
        7,
        "a whole product stays whole"
    );
    assert_eq!(Budget::Tokens(1024).tokens(100), 100);
    assert_eq!(Budget::parse("7%").unwrap().to_string(), "7%");
    assert_eq!(Budget::parse("12.5%").unwrap().to_string(), "12.5%");
    assert_eq!(Budget::Tokens(64).to_string(), "64");
}

#[test]
fn defaults_follow_the_papers() {
    let h2o = PolicyParams::defaults(Policy::H2o, 101);
    assert_eq!((h2o.sinks, h2o.recent, h2o.pool_kernel), (0, 50, 1));
    let snap = PolicyParams::defaults(Policy::SnapKv, 101);
    assert_eq!((snap.recent, snap.pool_kernel, snap.window), (32, 7, 32));
    assert_eq!(snap.with_window(16).recent, 16);
    assert_eq!(PolicyParams::defaults(Policy::StreamingLlm, 9).sinks, 4);
    assert_eq!(
        h2o.with_window(16).recent,
        50,
        "only SnapKV keeps its window"
    );
}

#[test]
fn equal_scores_keep_the_most_recent() {
    let p = params(Policy::Tova, 0, 0, 1);
    assert_eq!(plan_kept(&p, Some(&[0.5; 10]), 10, 0, 0, 3), vec![7, 8, 9]);
    // -0 and +0 tie too.
    assert_eq!(select_kept(&[0.0, -0.0, 0.0, -0.0], 2), vec![2, 3]);
}

#[test]
fn budget_zero_one_and_all() {
    let scores = [0.1, 0.9, 0.3, 0.2];
    let p = params(Policy::Tova, 0, 0, 1);
    assert!(plan_kept(&p, Some(&scores), 4, 0, 0, 0).is_empty());
    assert_eq!(plan_kept(&p, Some(&scores), 4, 0, 0, 1), vec![1]);
    assert_eq!(plan_kept(&p, Some(&scores), 4, 0, 0, 2), vec![1, 2]);
    assert_eq!(plan_kept(&p, Some(&scores), 4, 0, 0, 4), vec![0, 1, 2, 3]);
    assert_eq!(plan_kept(&p, Some(&scores), 4, 0, 0, 99), vec![0, 1, 2, 3]);
}

#[test]
fn sinks_come_first_then_the_newest() {
    // 3 sinks + 5 recent over a budget of 5: the sinks, then the 2 newest.
    let p = params(Policy::Tova, 3, 5, 1);
    let scores = [9.0; 8];
    assert_eq!(
        plan_kept(&p, Some(&scores), 8, 0, 0, 5),
        vec![0, 1, 2, 6, 7]
    );
    let pr = priorities(&p, Some(&scores), 8, 0, 0);
    assert_eq!(pr[2], f32::INFINITY);
    assert_eq!(pr[3], f32::MAX);
    // A recent window longer than the cache saturates instead of wrapping.
    let p = params(Policy::StreamingLlm, 4, 100, 1);
    assert_eq!(plan_kept(&p, None, 20, 0, 0, 6), vec![0, 1, 2, 3, 18, 19]);
}

#[test]
fn pooling_widens_a_peak() {
    let mut scores = vec![0.01f32; 20];
    scores[10] = 1.0;
    scores[3] = f32::NAN;
    let pr = priorities(&params(Policy::SnapKv, 0, 0, 7), Some(&scores), 20, 0, 0);
    assert!(pr[7..=13].iter().all(|&p| p == 1.0), "{pr:?}");
    assert_eq!(pr[6], 0.01);
    assert_eq!(pr[14], 0.01);
    assert_eq!(pr[3], 0.01, "NaN counts as 0 under maxNum");
    let kept = plan_kept(&params(Policy::SnapKv, 0, 0, 7), Some(&scores), 20, 0, 0, 7);
    assert_eq!(kept, (7..=13).collect::<Vec<u32>>());
    let unpooled = priorities(&params(Policy::SnapKv, 0, 0, 1), Some(&scores), 20, 0, 0);
    assert_eq!(unpooled[9], 0.01);
}

#[test]
fn random_priority_is_a_fixed_hash_in_unit_interval() {
    // x = 0 is a fixed point of the finaliser; SplitMix64's first output from state 0 is
    // mix(0x9e3779b97f4a7c15) = 0xe220a8397b1dcdaf, whose top 24 bits are 0xe220a8.
    assert_eq!(random_priority(0, 0, 0, 0), 0.0);
    let golden = crate::numeric::SPLITMIX64_GAMMA;
    assert_eq!(
        random_priority(golden, 0, 0, 0),
        0xe2_20a8 as f32 / 16_777_216.0
    );
    assert_eq!(
        random_priority(golden - (1 << 42) - 3, 1, 0, 3),
        random_priority(golden, 0, 0, 0)
    );
    let a: Vec<f32> = (0..1000).map(|t| random_priority(7, 1, 0, t)).collect();
    let b: Vec<f32> = (0..1000).map(|t| random_priority(7, 1, 0, t)).collect();
    let c: Vec<f32> = (0..1000).map(|t| random_priority(7, 1, 1, t)).collect();
    assert_eq!(a, b);
    assert!(a.iter().all(|p| (0.0..1.0).contains(p)));
    assert!(a.iter().zip(&c).filter(|(x, y)| x == y).count() < 5);
    let mean = a.iter().sum::<f32>() / 1000.0;
    assert!((mean - 0.5).abs() < 0.05, "{mean}");
    let p = params(Policy::Random, 0, 0, 1);
    assert_eq!(plan_kept(&p, None, 1000, 1, 0, 100).len(), 100);
    assert_ne!(
        plan_kept(&p, None, 1000, 1, 0, 100),
        plan_kept(&p, None, 1000, 1, 1, 100)
    );
}

#[test]
fn selection_is_fast_at_128k() {
    let len = 128 * 1024;
    let p = params(Policy::Random, 4, 64, 1);
    let start = std::time::Instant::now();
    let kept = plan_kept(&p, None, len, 0, 0, len / 10);
    assert!(start.elapsed().as_secs_f64() < 2.0, "{:?}", start.elapsed());
    assert_eq!(kept.len(), len / 10);
    assert!(kept.windows(2).all(|w| w[0] < w[1]));
    assert!(kept.starts_with(&[0, 1, 2, 3]) && *kept.last().unwrap() == len as u32 - 1);
}

/// Queries of ones (`[rows][group][dim]`) and `len` zero keys but `planted`, all twos: the
/// planted logit is `2 * dim * scale`, every other one 0.
fn planted(
    rows: usize,
    group: usize,
    dim: usize,
    len: usize,
    planted: usize,
) -> (Vec<f32>, Vec<f32>) {
    let mut k = vec![0.0f32; len * dim];
    k[planted * dim..(planted + 1) * dim].fill(2.0);
    (vec![1.0f32; rows * group * dim], k)
}

#[test]
fn attention_mass_sums_per_row_and_respects_causality() {
    let (group, dim, len) = (3, 16, 12);
    let (q, k) = planted(4, group, dim, len, 5);
    // Logit 8 at key 5. Rows at 0 and 4 cannot see it; the row at 30 sees all 12 keys.
    let mass = attention_mass(&q, group, &[0, 4, 7, 30], &k, len, dim, 0.25);
    let total: f64 = mass.iter().sum();
    assert!((total - 12.0).abs() < 1e-12, "rows * group: {total}");
    let (g, e8) = (group as f64, 8f64.exp());
    let close = |a: f64, b: f64| (a - b).abs() < 1e-12 * b.max(1.0);
    assert!(close(mass[5], g * (e8 / (e8 + 7.0) + e8 / (e8 + 11.0))));
    assert!(close(
        mass[0],
        g * (1.0 + 0.2 + 1.0 / (e8 + 7.0) + 1.0 / (e8 + 11.0))
    ));
    assert!(close(mass[8], g / (e8 + 11.0)), "seen by the last row only");
}

#[test]
fn h2o_keeps_a_planted_heavy_hitter_that_recent_drops() {
    let (group, dim, len, budget) = (2, 32, 64, 8);
    let (q, k) = planted(8, group, dim, len, 10);
    let positions: Vec<usize> = (len - 8..len).collect();
    let mass = attention_mass(&q, group, &positions, &k, len, dim, 1.0 / 32f64.sqrt());
    let argmax = (0..len).max_by(|&a, &b| mass[a].total_cmp(&mass[b]));
    assert_eq!(argmax, Some(10));
    let scores: Vec<f32> = mass.iter().map(|&m| m as f32).collect();
    let plan = |policy| {
        let p = PolicyParams::defaults(policy, budget);
        plan_kept(&p, Some(&scores), len, 0, 0, budget)
    };
    // Half recent (60..64), then the planted key, then keys 0..=56 tie (every row sees them
    // at logit 0) and the newest of them win.
    assert_eq!(plan(Policy::H2o), vec![10, 54, 55, 56, 60, 61, 62, 63]);
    assert_eq!(plan(Policy::Recent), (56..64).collect::<Vec<u32>>());
}
