//! The kv_evict suite's page moves as the block manager plans them: a realistic cache state
//! (requests that share a system prompt, forked beams, partially filled last blocks), the
//! manager's swap, copy-on-write and compaction plans on it, and the pure translation of those
//! plans into the kernels' arguments, with the checks that the arguments say exactly what the
//! plans say (bounds, counts, no destination that is also a source, each destination once).
//!
//! `blocks=N` is what a swap or copy-on-write plan moves: the builders below make the plans move
//! exactly N blocks (a last sequence sized to the remainder), so the cases' minimum bytes stay
//! N × 2 pools × page bytes. A compaction moves `min(budget, len)` tokens per sequence and kv head,
//! as before: the budget, not the state, sets the count.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::block_manager::{BlockManager, CompactPlan, Options, PrefixHash, SeqId, SwapPlan};
use super::config::{EvictConfig, Op};

/// Whole-page copies for `kv_copy_pages`: page `src[i]` of the source side to page `dst[i]` of
/// the destination side (device pool or pinned host slots, by the op).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageMoves {
    pub src: Vec<i32>,
    pub dst: Vec<i32>,
    /// Pages of the device pools and of the host buffers the indices address.
    pub device_pages: usize,
    pub host_pages: usize,
}

/// Device pages of a page-move case: the running state (about `blocks`) and what the move adds.
pub fn move_device_pages(c: &EvictConfig) -> usize {
    2 * c.blocks + 32
}

/// Host slots of a page-move case: one swap's worth and a little room.
pub fn move_host_pages(c: &EvictConfig) -> usize {
    c.blocks + 16
}

/// Random token ids; the vocabulary is large enough that only deliberate prefixes are shared.
fn tokens(rng: &mut StdRng, n: usize) -> Vec<u32> {
    (0..n).map(|_| rng.random_range(0..50_000)).collect()
}

/// A serving-like state: requests that share a system prompt of 2.5 blocks, each with its own
/// question (never a whole number of blocks, so every last block is partial), every third one
/// forked into a second beam that has written one token of its own; added until the running
/// sequences hold `blocks` blocks. Returns the manager and the running ids, parents first.
fn serving_state(c: &EvictConfig, rng: &mut StdRng) -> (BlockManager, Vec<SeqId>) {
    let bs = c.cache.page_size;
    let mut m = BlockManager::with_options(Options {
        num_blocks: move_device_pages(c),
        block_size: bs,
        num_host_blocks: move_host_pages(c),
        kv_heads: c.cache.kv_heads,
        hash: PrefixHash::Fast,
    });
    let system = tokens(rng, 2 * bs + bs.div_ceil(2));
    let mut ids = Vec::new();
    let held = |m: &BlockManager| m.num_free_blocks() + m.num_cached_blocks();
    let total = move_device_pages(c);
    while total - held(&m) < c.blocks {
        let id = SeqId(ids.len() as u64);
        let mut len = rng.random_range(1..=3 * bs);
        if (system.len() + len) % bs == 0 {
            len += 1;
        }
        let prompt = [system.clone(), tokens(rng, len)].concat();
        m.add_sequence(id, &prompt).expect("sized for the state");
        ids.push(id);
        if ids.len() % 3 == 0 {
            let beam = SeqId(ids.len() as u64);
            m.fork(id, beam).expect("sized for the state");
            m.append_token(beam, rng.random_range(0..50_000))
                .expect("sized for the state");
            ids.push(beam);
        }
    }
    (m, ids)
}

/// A request of `n` blocks whose last block is partial (when the block size allows), compacted
/// to all its tokens so that no hash shares its blocks: a swap copies every one of them.
fn unshared_request(m: &mut BlockManager, id: SeqId, n: usize, rng: &mut StdRng) {
    let bs = m.block_size();
    let len = n * bs - usize::from(bs > 1);
    m.add_sequence(id, &tokens(rng, len))
        .expect("sized for the state");
    let all: Vec<usize> = (0..len).collect();
    let plan = m
        .compact(id, &vec![all; m.kv_heads()])
        .expect("sized for the state");
    m.complete(plan.ticket).expect("just planned");
}

/// Swaps out running sequences until exactly `n` blocks are copied (an unshared request sized
/// to the remainder last), as one batch; completes the copies. Returns each sequence's plan.
fn swap_out_exactly(
    m: &mut BlockManager,
    ids: &[SeqId],
    n: usize,
    rng: &mut StdRng,
) -> Vec<(SeqId, SwapPlan)> {
    let mut plans = Vec::new();
    let mut left = n;
    for &id in ids {
        let len = m.block_table(id).map_or(usize::MAX, <[u32]>::len);
        if len <= left && len > 0 {
            left -= len;
            plans.push((id, m.swap_out(id).expect("sized for the state")));
        }
    }
    if left > 0 {
        let filler = SeqId(u64::MAX);
        unshared_request(m, filler, left, rng);
        plans.push((filler, m.swap_out(filler).expect("sized for the state")));
    }
    for (_, plan) in &plans {
        m.complete(plan.ticket).expect("just planned");
    }
    plans
}

/// The page copies of a swap-out, swap-in or copy-on-write case: `c.blocks` of them, from the
/// block manager's plans on a serving-like state (deterministic in `seed`).
pub fn page_moves(c: &EvictConfig, seed: u64) -> PageMoves {
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut m, ids) = serving_state(c, &mut rng);
    let n = c.blocks;
    let pairs: Vec<(u32, u32)> = match c.op {
        Op::SwapOut => swap_out_exactly(&mut m, &ids, n, &mut rng)
            .into_iter()
            .flat_map(|(_, p)| p.pairs)
            .collect(),
        Op::SwapIn => {
            // The swapped requests come back after the others have finished and other work
            // has evicted the cache: nothing on the device shares their blocks, and the batch
            // of swap-ins, completed together, shares nothing within itself (a copy is
            // registered only once it has landed), so every block is copied.
            let out = swap_out_exactly(&mut m, &ids, n, &mut rng);
            for &id in &ids {
                if m.block_table(id).is_ok() {
                    m.free_sequence(id).expect("running");
                }
            }
            let other = SeqId(u64::MAX - 1);
            let room = m.num_free_blocks() + m.num_cached_blocks();
            let work = tokens(&mut rng, room * m.block_size());
            m.add_sequence(other, &work).expect("sized for the pool");
            m.free_sequence(other).expect("just added");
            let backs: Vec<SwapPlan> = out
                .iter()
                .map(|&(id, _)| m.swap_in(id).expect("sized for the state"))
                .collect();
            for back in &backs {
                m.complete(back.ticket).expect("just planned");
            }
            backs.into_iter().flat_map(|p| p.pairs).collect()
        }
        Op::CopyOnWrite => {
            // Beams forked from running sequences, each writing its first token into a copy of
            // the shared partial last block.
            let parents: Vec<SeqId> = ids
                .iter()
                .copied()
                .filter(|&id| m.num_tokens(id).is_ok_and(|t| t % m.block_size() != 0))
                .collect();
            (0..n)
                .map(|i| {
                    let child = SeqId(1 << 40 | i as u64);
                    m.fork(parents[i % parents.len()], child)
                        .expect("a running parent");
                    let out = m.append_token(child, 7).expect("sized for the state");
                    let copy = out.copy.expect("the parent's partial block is shared");
                    (copy.src, copy.dst)
                })
                .collect()
        }
        op => unreachable!("{} moves no pages", op.name()),
    };
    let (src, dst) = pairs.iter().map(|&(s, d)| (s as i32, d as i32)).unzip();
    PageMoves {
        src,
        dst,
        device_pages: move_device_pages(c),
        host_pages: move_host_pages(c),
    }
}

/// Checks that the copies are what a kernel may run as one batch: `count` pairs, every index
/// inside its side, each destination written once, and no destination read as a source (on the
/// same side: copy-on-write). Sources may repeat: a block shared by two swapped sequences is
/// copied to each one's host slot, a block forked into two beams is copied for each.
pub fn check_page_moves(op: Op, moves: &PageMoves, count: usize) -> Result<(), String> {
    let (src_pages, dst_pages) = match op {
        Op::SwapOut => (moves.device_pages, moves.host_pages),
        Op::SwapIn => (moves.host_pages, moves.device_pages),
        _ => (moves.device_pages, moves.device_pages),
    };
    if moves.src.len() != count || moves.dst.len() != count {
        return Err(format!(
            "{} sources and {} destinations for {count} blocks",
            moves.src.len(),
            moves.dst.len()
        ));
    }
    let within = |p: i32, n: usize| usize::try_from(p).is_ok_and(|p| p < n);
    if let Some(p) = moves.src.iter().find(|&&p| !within(p, src_pages)) {
        return Err(format!("source page {p} outside the {src_pages} pages"));
    }
    if let Some(p) = moves.dst.iter().find(|&&p| !within(p, dst_pages)) {
        return Err(format!(
            "destination page {p} outside the {dst_pages} pages"
        ));
    }
    let mut written = vec![false; dst_pages];
    for &p in &moves.dst {
        if std::mem::replace(&mut written[p as usize], true) {
            return Err(format!("destination page {p} written twice"));
        }
    }
    if op == Op::CopyOnWrite {
        if let Some(p) = moves.src.iter().find(|&&p| written[p as usize]) {
            return Err(format!("page {p} is both a source and a destination"));
        }
    }
    Ok(())
}

/// The compaction batch of a case: one sequence per context length, the first half of the
/// shortest context shared by all as a system prompt, and a sequence whose length equals its
/// predecessor's, every fourth, a fork of it (a beam: every block shared, the partial one too).
/// The pool leaves room for every sequence's fresh pages, as before.
pub fn compaction_state(c: &EvictConfig, seed: u64) -> (BlockManager, Vec<SeqId>) {
    let lens = c.context_lens();
    let ps = c.cache.page_size;
    let mut m = BlockManager::with_options(Options {
        num_blocks: compaction_pool_pages(c),
        block_size: ps,
        num_host_blocks: 0,
        kv_heads: c.cache.kv_heads,
        hash: PrefixHash::Fast,
    });
    let mut rng = StdRng::seed_from_u64(seed);
    let shortest = lens.iter().copied().min().unwrap_or(0);
    let system = tokens(&mut rng, shortest / 2);
    let ids: Vec<SeqId> = (0..lens.len() as u64).map(SeqId).collect();
    for (b, &len) in lens.iter().enumerate() {
        if b % 4 == 3 && lens[b - 1] == len {
            m.fork(ids[b - 1], ids[b]).expect("sized for the batch");
            continue;
        }
        let prompt = [system.clone(), tokens(&mut rng, len - system.len())].concat();
        m.add_sequence(ids[b], &prompt)
            .expect("sized for the batch");
    }
    (m, ids)
}

/// Pages of a compaction case's pools: every context in its own pages and every sequence's
/// fresh pages (shared prefixes leave some unused).
pub fn compaction_pool_pages(c: &EvictConfig) -> usize {
    let ps = c.cache.page_size;
    let old: usize = c.context_lens().iter().map(|l| l.div_ceil(ps)).sum();
    let new: usize = c.budgets().iter().map(|b| b.div_ceil(ps)).sum();
    old + new
}

/// `[batch][max_pages]` block-table rows (padding 0), as the kernels read them.
pub fn table_rows<'a>(tables: impl IntoIterator<Item = &'a [u32]>, max_pages: usize) -> Vec<i32> {
    tables
        .into_iter()
        .flat_map(|t| {
            assert!(
                t.len() <= max_pages,
                "{} pages past the row's {max_pages}",
                t.len()
            );
            t.iter()
                .map(|&p| p as i32)
                .chain(std::iter::repeat(0))
                .take(max_pages)
        })
        .collect()
}

/// The kept lists of one sequence, per kv head, from the kernels' `[batch][kv_heads][stride]`
/// buffer: entries `[0, count)` of each row.
pub fn kept_of(
    kept: &[i32],
    b: usize,
    kv_heads: usize,
    stride: usize,
    count: usize,
) -> Vec<Vec<usize>> {
    (0..kv_heads)
        .map(|h| {
            kept[(b * kv_heads + h) * stride..][..count]
                .iter()
                .map(|&t| t as usize)
                .collect()
        })
        .collect()
}

/// The compaction of a whole batch, planned as one scheduler step: every sequence compacted
/// before any gather completes, so that no sequence's fresh pages are another's old pages.
pub fn plan_compaction(
    m: &mut BlockManager,
    ids: &[SeqId],
    kept: &[i32],
    stride: usize,
    counts: &[usize],
) -> Vec<CompactPlan> {
    let kvh = m.kv_heads();
    (ids.iter().zip(counts).enumerate())
        .map(|(b, (&id, &count))| {
            m.compact(id, &kept_of(kept, b, kvh, stride, count))
                .expect("the kept lists are the policy's, the pool sized for them")
        })
        .collect()
}

/// `kv_compact`'s table and count arguments for a batch's plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactArgs {
    /// `[batch][max_pages]` rows of the block tables before and after.
    pub old_tables: Vec<i32>,
    pub new_tables: Vec<i32>,
    pub max_pages: usize,
    /// Tokens kept per kv head of each sequence: the kernel's `min(budgets[b], context_lens[b])`.
    pub counts: Vec<usize>,
}

pub fn compact_args(plans: &[CompactPlan], max_pages: usize) -> CompactArgs {
    CompactArgs {
        old_tables: table_rows(plans.iter().map(|p| &p.old_table[..]), max_pages),
        new_tables: table_rows(plans.iter().map(|p| &p.new_table[..]), max_pages),
        max_pages,
        counts: plans.iter().map(CompactPlan::num_kept).collect(),
    }
}

/// Checks that `kv_compact`'s arguments say what the plans say: row `b` of the old and new
/// tables is plan `b`'s and as long as `lens[b]` and the kept count need, each kept list is
/// that long, increasing and below the length, every page is inside the pool, no fresh page is
/// any sequence's old page and none is used twice.
pub fn check_compact_args(
    plans: &[CompactPlan],
    args: &CompactArgs,
    lens: &[usize],
    page_size: usize,
    pool_pages: usize,
) -> Result<(), String> {
    let CompactArgs {
        old_tables,
        new_tables,
        max_pages,
        counts,
    } = args;
    let max_pages = *max_pages;
    if plans.len() != lens.len() || counts.len() != lens.len() {
        return Err(format!(
            "{} plans, {} counts for {} sequences",
            plans.len(),
            counts.len(),
            lens.len()
        ));
    }
    let mut old = vec![false; pool_pages];
    let mut fresh = vec![false; pool_pages];
    for (b, plan) in plans.iter().enumerate() {
        let (old_row, new_row) = (
            &old_tables[b * max_pages..][..max_pages],
            &new_tables[b * max_pages..][..max_pages],
        );
        let (n_old, n_new) = (lens[b].div_ceil(page_size), counts[b].div_ceil(page_size));
        let same = |row: &[i32], table: &[u32]| row.iter().zip(table).all(|(&r, &t)| r == t as i32);
        if plan.old_table.len() != n_old || !same(old_row, &plan.old_table) {
            return Err(format!("sequence {b}: old table row differs from the plan"));
        }
        if plan.new_table.len() != n_new || !same(new_row, &plan.new_table) {
            return Err(format!("sequence {b}: new table row differs from the plan"));
        }
        if plan.num_kept() != counts[b] {
            return Err(format!(
                "sequence {b}: the plan keeps {}, the kernel {}",
                plan.num_kept(),
                counts[b]
            ));
        }
        for (h, list) in plan.kept.iter().enumerate() {
            let ordered = list.windows(2).all(|w| w[0] < w[1]);
            if list.len() != counts[b] || !ordered || list.last().is_some_and(|&t| t >= lens[b]) {
                return Err(format!(
                    "sequence {b} kv head {h}: kept list {list:?} out of bounds"
                ));
            }
        }
        for &p in &plan.old_table {
            *old.get_mut(p as usize)
                .ok_or(format!("old page {p} outside the pool"))? = true;
        }
        for &p in &plan.new_table {
            let seen = fresh
                .get_mut(p as usize)
                .ok_or(format!("fresh page {p} outside the pool"))?;
            if std::mem::replace(seen, true) {
                return Err(format!("fresh page {p} given twice"));
            }
        }
    }
    match (0..pool_pages).find(|&p| old[p] && fresh[p]) {
        Some(p) => Err(format!("page {p} is both read and written by the gather")),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
