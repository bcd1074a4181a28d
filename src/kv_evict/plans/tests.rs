//! CPU tests of the plans behind the page-move and compaction cases, and of their kernel
//! arguments.

use super::*;
use crate::kv_evict::policy::plan_kept;

fn config(spec: &str) -> EvictConfig {
    EvictConfig::parse(spec).unwrap()
}

#[test]
fn page_moves_move_exactly_the_requested_blocks_from_a_realistic_state() {
    for spec in [
        "op=swap-out,blocks=37,heads=8/2,d=64,p=16",
        "op=swap-in,blocks=37,heads=8/2,d=64,p=16",
        "op=cow,blocks=37,heads=8/2,d=64,p=16",
        "op=swap-out,blocks=3,heads=8/1,d=128,p=1,kv=e4m3",
        "op=swap-in,blocks=3,heads=8/1,d=128,p=1,kv=e4m3",
        "op=cow,blocks=3,heads=8/1,d=128,p=16",
        "op=swap-in,blocks=1024",
    ] {
        let c = config(spec);
        let moves = page_moves(&c, 5);
        check_page_moves(c.op, &moves, c.blocks).unwrap_or_else(|e| panic!("{spec}: {e}"));
        assert_eq!(
            moves,
            page_moves(&c, 5),
            "{spec}: deterministic in the seed"
        );
    }
}

#[test]
fn the_realistic_state_shares_prefixes_forks_and_partial_blocks() {
    let c = config("op=swap-out,blocks=200,heads=8/2,d=64,p=16");
    let mut rng = StdRng::seed_from_u64(1);
    let (m, ids) = serving_state(&c, &mut rng);
    let tables: Vec<&[u32]> = ids.iter().map(|&id| m.block_table(id).unwrap()).collect();
    let held: usize = tables.iter().map(|t| t.len()).sum();
    assert!(held >= 200);
    // The system prompt's two full blocks are shared by every request; beams share all.
    assert!(tables.iter().all(|t| t[..2] == tables[0][..2]));
    assert!(m.refcount(tables[0][0]) as usize == ids.len());
    assert!(ids.iter().all(|&id| m.num_tokens(id).unwrap() % 16 != 0));
    // Swaps copy shared blocks once per swapped sequence: sources repeat, destinations do not.
    let moves = page_moves(&c, 1);
    let mut sources = moves.src.clone();
    sources.sort_unstable();
    sources.dedup();
    assert!(sources.len() < moves.src.len());
    // Copies on write: a shared partial block is copied once per beam that writes to it.
    let cow = page_moves(&config("op=cow,blocks=200,heads=8/2,d=64,p=16"), 1);
    assert!(cow.src.iter().all(|s| !cow.dst.contains(s)));
}

#[test]
fn page_move_checks_catch_bad_arguments() {
    let c = config("op=cow,blocks=8,heads=8/2,d=64,p=16");
    let good = page_moves(&c, 2);
    let broken = |f: &dyn Fn(&mut PageMoves)| {
        let mut m = good.clone();
        f(&mut m);
        check_page_moves(c.op, &m, 8).unwrap_err()
    };
    assert!(broken(&|m| m.dst[1] = m.dst[0]).contains("twice"));
    assert!(broken(&|m| m.dst[0] = m.src[1]).contains("both"));
    assert!(broken(&|m| m.src[0] = m.device_pages as i32).contains("outside"));
    assert!(broken(&|m| m.dst.pop().map(drop).unwrap_or(())).contains("destinations"));
    // A swap-out's destinations are host slots: the host side's bound applies.
    let out = page_moves(&config("op=swap-out,blocks=8,heads=8/2,d=64,p=16"), 2);
    let mut bad = out.clone();
    bad.dst[0] = out.host_pages as i32;
    assert!(check_page_moves(Op::SwapOut, &bad, 8)
        .unwrap_err()
        .contains("outside"));
}

/// The policy's kept lists for a batch, `[batch][kv_heads][stride]`, as the suite computes them.
fn kept_lists(c: &EvictConfig, stride: usize) -> (Vec<i32>, Vec<usize>) {
    let (lens, budgets, kvh) = (c.context_lens(), c.budgets(), c.cache.kv_heads);
    let mut kept = vec![-1; lens.len() * kvh * stride];
    for (b, &len) in lens.iter().enumerate() {
        for h in 0..kvh {
            let p = c.policy_params(budgets[b]);
            let list = plan_kept(&p, None, len, b as u32, h as u32, budgets[b]);
            for (j, &t) in list.iter().enumerate() {
                kept[(b * kvh + h) * stride + j] = t as i32;
            }
        }
    }
    let counts = lens.iter().zip(&budgets).map(|(&l, &b)| l.min(b)).collect();
    (kept, counts)
}

#[test]
fn compaction_plans_become_kernel_arguments_without_aliasing() {
    for spec in [
        "op=compact,policy=random,lens=1:15:16:17:300:2049,heads=8/2,d=64,budget=37%",
        "op=compact,policy=random,b=8,ctx=100,heads=8/4,d=64,p=7,budget=50%",
        "op=compact,policy=recent,b=4,ctx=64,heads=8/2,d=64,p=1,budget=0",
    ] {
        let c = config(spec);
        let ps = c.cache.page_size;
        let (mut m, ids) = compaction_state(&c, 3);
        let lens = c.context_lens();
        let max_pages = lens.iter().map(|l| l.div_ceil(ps)).max().unwrap().max(1);
        let before = table_rows(ids.iter().map(|&id| m.block_table(id).unwrap()), max_pages);
        let stride = c.budgets().into_iter().max().unwrap().max(1);
        let (kept, counts) = kept_lists(&c, stride);
        let plans = plan_compaction(&mut m, &ids, &kept, stride, &counts);
        let args = compact_args(&plans, max_pages);
        assert_eq!(args.old_tables, before, "{spec}");
        check_compact_args(&plans, &args, &lens, ps, compaction_pool_pages(&c))
            .unwrap_or_else(|e| panic!("{spec}: {e}"));
        // Each kv head's kept tokens are the policy's, and the next token continues the
        // original positions.
        for (b, plan) in plans.iter().enumerate() {
            assert_eq!(
                plan.kept,
                kept_of(&kept, b, c.cache.kv_heads, stride, counts[b])
            );
            assert_eq!(plan.next_position, lens[b]);
        }
        m.check_invariants().unwrap();
    }
}

#[test]
fn the_compaction_batch_shares_a_prefix_and_forks_beams() {
    let c = config("op=compact,b=8,ctx=100,heads=8/2,d=64,p=16");
    let (m, ids) = compaction_state(&c, 1);
    let t: Vec<&[u32]> = ids.iter().map(|&id| m.block_table(id).unwrap()).collect();
    // 50 shared tokens: three full blocks in every table; sequence 3 is sequence 2's beam.
    assert!(t.iter().all(|x| x[..3] == t[0][..3]));
    assert_eq!(t[3], t[2]);
    assert_ne!(t[1][3], t[0][3]);
}

#[test]
fn compaction_checks_catch_bad_arguments() {
    let c = config("op=compact,policy=random,b=4,ctx=100,heads=8/2,d=64,budget=50%");
    let (mut m, ids) = compaction_state(&c, 3);
    let (kept, counts) = kept_lists(&c, 50);
    let plans = plan_compaction(&mut m, &ids, &kept, 50, &counts);
    let args = compact_args(&plans, 7);
    let (lens, pool) = (c.context_lens(), compaction_pool_pages(&c));
    let check = |a: &CompactArgs| check_compact_args(&plans, a, &lens, 16, pool);
    check(&args).unwrap();
    let mut aliased = args.clone();
    aliased.new_tables[0] = aliased.old_tables[7];
    assert!(check(&aliased).unwrap_err().contains("differs"));
    let mut short = args.clone();
    short.counts[2] -= 1;
    assert!(check(&short).unwrap_err().contains("keeps"));
    // Plans whose fresh pages are another sequence's old ones: what completing each gather
    // before planning the next would allow.
    let (mut m, ids) = compaction_state(&c, 3);
    let mut eager = Vec::new();
    for (b, &id) in ids.iter().enumerate() {
        let plan = m.compact(id, &kept_of(&kept, b, 2, 50, counts[b])).unwrap();
        m.complete(plan.ticket).unwrap();
        eager.push(plan);
    }
    let eager_args = compact_args(&eager, 7);
    let err = check_compact_args(&eager, &eager_args, &lens, 16, pool).unwrap_err();
    assert!(
        err.contains("both read and written") || err.contains("twice"),
        "{err}"
    );
}
