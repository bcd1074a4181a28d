//! Unit tests of the block manager, one behaviour each.

use super::*;

const A: SeqId = SeqId(1);
const B: SeqId = SeqId(2);
const C: SeqId = SeqId(3);

fn checked(m: &BlockManager) {
    if let Err(e) = m.check_invariants() {
        panic!("invariant broken: {e}\n{m:#?}");
    }
}

fn table(m: &BlockManager, id: SeqId) -> Vec<u32> {
    m.block_table(id).unwrap().to_vec()
}

/// Compacts every kv head to the same `kept` positions and completes the gather at once.
fn compact(m: &mut BlockManager, id: SeqId, kept: &[usize]) -> Result<CompactPlan, BlockError> {
    let plan = m.compact(id, &vec![kept.to_vec(); m.kv_heads()])?;
    m.complete(plan.ticket).unwrap();
    Ok(plan)
}

/// Swaps out and completes the copy at once.
fn swap_out(m: &mut BlockManager, id: SeqId) -> Result<SwapPlan, BlockError> {
    let plan = m.swap_out(id)?;
    m.complete(plan.ticket).unwrap();
    Ok(plan)
}

/// Swaps in and completes the copy at once.
fn swap_in(m: &mut BlockManager, id: SeqId) -> Result<SwapPlan, BlockError> {
    let plan = m.swap_in(id)?;
    m.complete(plan.ticket).unwrap();
    Ok(plan)
}

#[test]
fn equal_prefixes_share_full_blocks() {
    let mut m = BlockManager::new(16, 4, 0);
    let prompt: Vec<u32> = (0..10).collect();
    assert_eq!(m.add_sequence(A, &prompt).unwrap().num_cached_tokens, 0);
    // Same two full blocks, different tail: both full blocks are shared, the partial is not.
    let mut same_prefix = prompt[..8].to_vec();
    same_prefix.extend([77, 78, 79]);
    let hit = m.add_sequence(B, &same_prefix).unwrap();
    assert_eq!((hit.num_cached_tokens, hit.num_tokens_to_compute()), (8, 3));
    let (a, b) = (table(&m, A), table(&m, B));
    assert_eq!(b[..2], a[..2]);
    assert_ne!(b[2], a[2]);
    assert_eq!(
        (m.refcount(a[0]), m.refcount(a[1]), m.refcount(a[2])),
        (2, 2, 1)
    );
    // A different token in block 1 shares block 0 only: the chained hash of block 1 differs.
    let mut diverging = prompt.clone();
    diverging[5] = 99;
    assert_eq!(m.add_sequence(C, &diverging).unwrap().num_cached_tokens, 4);
    let c = table(&m, C);
    assert_eq!(c[0], a[0]);
    assert!(!a.contains(&c[1]));
    assert_eq!(m.refcount(a[0]), 3);
    checked(&m);
}

#[test]
fn equal_blocks_after_different_prefixes_are_not_shared() {
    let mut m = BlockManager::new(8, 2, 2);
    m.add_sequence(A, &[1, 2, 5, 6]).unwrap();
    // Block 1 has the same tokens but follows a different block: its K/V differs.
    let b = m.add_sequence(B, &[3, 4, 5, 6]).unwrap();
    assert_eq!(b.num_cached_tokens, 0);
    // Swap-in takes back cached blocks by hash at any position, not just a prefix: it finds
    // B's own blocks, still cached, and must not mistake A's block 1 for B's.
    let b = table(&m, B);
    swap_out(&mut m, B).unwrap();
    assert!(swap_in(&mut m, B).unwrap().pairs.is_empty());
    assert_eq!(table(&m, B), b);
    assert_eq!(m.refcount(table(&m, A)[1]), 1);
    assert_eq!(m.tokens(B).unwrap(), [3, 4, 5, 6]);
    checked(&m);
}

#[test]
fn fork_then_append_copies_the_shared_partial_block() {
    let mut m = BlockManager::new(8, 4, 0);
    m.add_sequence(A, &[1, 2, 3, 4, 5, 6]).unwrap();
    m.fork(A, B).unwrap();
    let parent = table(&m, A);
    assert_eq!(table(&m, B), parent);
    assert_eq!(m.refcount(parent[1]), 2);

    let out = m.append_token(B, 7).unwrap();
    let copy = out.copy.expect("the partial block is shared");
    assert_eq!(copy.src, parent[1]);
    assert_eq!((out.block, out.offset), (copy.dst, 2));
    assert_eq!(table(&m, B), [parent[0], copy.dst]);
    assert_eq!(table(&m, A), parent);
    assert_eq!(m.tokens(A).unwrap(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(m.tokens(B).unwrap(), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        (
            m.refcount(parent[0]),
            m.refcount(parent[1]),
            m.refcount(copy.dst)
        ),
        (2, 1, 1)
    );

    // The parent now holds its partial block alone: written in place.
    let out = m.append_token(A, 8).unwrap();
    assert_eq!((out.block, out.offset, out.copy), (parent[1], 2, None));
    assert_eq!(m.tokens(A).unwrap(), [1, 2, 3, 4, 5, 6, 8]);
    checked(&m);
}

#[test]
fn append_to_a_full_block_allocates_and_full_blocks_are_cached() {
    let mut m = BlockManager::new(8, 2, 0);
    m.add_sequence(A, &[1, 2]).unwrap();
    m.fork(A, B).unwrap();
    // Full shared block: a new block, no copy.
    let out = m.append_token(A, 3).unwrap();
    assert_eq!((out.offset, out.copy), (0, None));
    assert_eq!(m.append_token(A, 4).unwrap().block, out.block);
    // The block that filled by appending is registered: a prompt with that prefix reuses it.
    assert_eq!(
        m.add_sequence(C, &[1, 2, 3, 4, 5])
            .unwrap()
            .num_cached_tokens,
        4
    );
    assert_eq!(table(&m, C)[1], out.block);
    checked(&m);
}

#[test]
fn lru_evicts_the_least_recently_released_cached_block() {
    let mut m = BlockManager::new(4, 2, 0);
    let prompts = [[1, 2], [3, 4], [5, 6]];
    for (i, p) in prompts.iter().enumerate() {
        m.add_sequence(SeqId(i as u64), p).unwrap();
    }
    let blocks: Vec<u32> = (0..3).map(|i| table(&m, SeqId(i))[0]).collect();
    for i in [0, 2, 1] {
        m.free_sequence(SeqId(i)).unwrap();
    }
    assert_eq!((m.num_free_blocks(), m.num_cached_blocks()), (1, 3));
    // Two blocks: the free one, then sequence 0's, released first.
    let miss = m.add_sequence(SeqId(10), &[7, 8, 7]).unwrap();
    assert_eq!(miss.num_cached_tokens, 0);
    assert_eq!(table(&m, SeqId(10))[1], blocks[0]);
    // [5, 6] still hits; its partial block evicts the oldest cached block: sequence 1's, since
    // sequence 2's is taken back first.
    let hit = m.add_sequence(SeqId(11), &[5, 6, 9]).unwrap();
    assert_eq!(hit.num_cached_tokens, 2);
    assert_eq!(table(&m, SeqId(11)), [blocks[2], blocks[1]]);
    m.free_sequence(SeqId(11)).unwrap();
    // [3, 4] no longer hits; [5, 6] still does.
    m.free_sequence(SeqId(10)).unwrap();
    assert_eq!(
        m.add_sequence(SeqId(12), &[3, 4, 0])
            .unwrap()
            .num_cached_tokens,
        0
    );
    assert_eq!(
        m.add_sequence(SeqId(13), &[5, 6, 0])
            .unwrap()
            .num_cached_tokens,
        2
    );
    checked(&m);
}

#[test]
fn a_sequence_is_evicted_tail_first() {
    let mut m = BlockManager::new(4, 2, 0);
    m.add_sequence(A, &[1, 2, 3, 4, 5, 6]).unwrap();
    let a = table(&m, A);
    m.free_sequence(A).unwrap();
    // One block from the free list, one evicted: A's last block, released first.
    m.add_sequence(B, &[9; 4]).unwrap();
    assert_eq!(table(&m, B)[1], a[2]);
    // A's head is still cached: a prompt that continues it takes it back, and its own last
    // block (the last token is always computed) evicts B's tail, now the oldest.
    m.free_sequence(B).unwrap();
    assert_eq!(
        m.add_sequence(C, &[1, 2, 3, 4, 0])
            .unwrap()
            .num_cached_tokens,
        4
    );
    assert_eq!(table(&m, C)[..2], a[..2]);
    checked(&m);
}

#[test]
fn failed_operations_change_nothing() {
    use BlockError::*;
    let mut m = BlockManager::new(4, 2, 1);
    m.add_sequence(A, &[1, 2, 3]).unwrap();
    m.fork(A, B).unwrap();
    m.add_sequence(C, &[4, 5]).unwrap();
    m.free_sequence(C).unwrap();
    // 1 free + 1 cached block: a 3-block prompt fails without evicting the cached one.
    let before = m.clone();
    let oob = |needed, available| OutOfBlocks { needed, available };
    assert_eq!(m.add_sequence(C, &[7; 6]), Err(oob(3, 2)));
    assert_eq!(m.add_sequence(A, &[1]), Err(SequenceExists(A)));
    assert_eq!(m.fork(A, B), Err(SequenceExists(B)));
    assert_eq!(m.fork(C, SeqId(9)), Err(UnknownSequence(C)));
    let slots = Err(OutOfHostSlots {
        needed: 2,
        available: 1,
    });
    assert_eq!(swap_out(&mut m, A), slots);
    assert_eq!(swap_in(&mut m, A), Err(NotSwapped(A, Residency::Device)));
    assert_eq!(m.resume(A), Err(NotDropped(A, Residency::Device)));
    assert_eq!(m.free_sequence(C), Err(UnknownSequence(C)));
    assert_eq!(m, before);
    // With every block taken, the copy-on-write of A's shared partial block fails too.
    m.add_sequence(C, &[7; 4]).unwrap();
    assert!(!m.can_allocate(1));
    let before = m.clone();
    assert_eq!(m.append_token(A, 5), Err(oob(1, 0)));
    assert_eq!(m, before);
    checked(&m);
}

#[test]
fn swap_out_and_in_round_trips() {
    let mut m = BlockManager::new(4, 4, 4);
    let prompt: Vec<u32> = (0..10).collect();
    m.add_sequence(A, &prompt).unwrap();
    let blocks = table(&m, A);
    let out = swap_out(&mut m, A).unwrap();
    assert_eq!(out.direction, SwapDirection::DeviceToHost);
    assert_eq!(out.pairs.iter().map(|p| p.0).collect::<Vec<_>>(), blocks);
    assert_eq!(m.residency(A), Ok(Residency::Host));
    assert_eq!(
        m.append_token(A, 1),
        Err(BlockError::NotOnDevice(A, Residency::Host))
    );
    // The full blocks stay cached, the partial one is free; the tokens are on the host.
    assert_eq!(
        (
            m.num_free_blocks(),
            m.num_cached_blocks(),
            m.num_free_host_slots()
        ),
        (2, 2, 1)
    );
    assert_eq!(m.tokens(A).unwrap(), prompt);
    checked(&m);

    // Evict everything, so that swap-in copies every block.
    m.add_sequence(B, &[50; 16]).unwrap();
    m.free_sequence(B).unwrap();
    m.add_sequence(B, &[60; 4]).unwrap();
    let back = swap_in(&mut m, A).unwrap();
    assert_eq!(back.direction, SwapDirection::HostToDevice);
    assert_eq!(back.pairs.len(), 3);
    assert_eq!(
        back.pairs.iter().map(|p| p.0).collect::<Vec<_>>(),
        out.pairs.iter().map(|p| p.1).collect::<Vec<_>>()
    );
    assert_eq!(
        back.pairs.iter().map(|p| p.1).collect::<Vec<_>>(),
        table(&m, A)
    );
    assert_eq!(
        (m.num_tokens(A), m.block_table(A).unwrap().len()),
        (Ok(10), 3)
    );
    assert_eq!(m.tokens(A).unwrap(), prompt);
    assert_eq!(m.num_free_host_slots(), 4);
    // Restored full blocks are prefix-cached again (once the copy has completed).
    m.free_sequence(B).unwrap();
    assert_eq!(
        m.add_sequence(C, &prompt[..9]).unwrap().num_cached_tokens,
        8
    );
    assert_eq!(table(&m, C)[..2], table(&m, A)[..2]);

    // A quick round trip finds the full blocks still cached and copies only the partial one.
    m.free_sequence(C).unwrap();
    swap_out(&mut m, A).unwrap();
    let back = swap_in(&mut m, A).unwrap();
    assert_eq!(back.pairs.len(), 1);
    assert_eq!(m.tokens(A).unwrap(), prompt);
    checked(&m);
}

#[test]
fn swapping_a_forked_sequence_copies_shared_blocks_and_keeps_them_for_the_sibling() {
    let mut m = BlockManager::new(8, 2, 8);
    m.add_sequence(A, &[1, 2, 3, 4, 5]).unwrap();
    m.fork(A, B).unwrap();
    let shared = table(&m, A);
    let out = swap_out(&mut m, B).unwrap();
    assert_eq!(out.pairs.len(), 3);
    assert_eq!(table(&m, A), shared);
    assert!(shared.iter().all(|&b| m.refcount(b) == 1));
    m.append_token(A, 6).unwrap();
    // Back in: the full blocks are still held by A and shared again; the partial one, which A
    // has since written to, comes from the host copy.
    let back = swap_in(&mut m, B).unwrap();
    assert_eq!(back.pairs.len(), 1);
    let b = table(&m, B);
    assert_eq!(b[..2], shared[..2]);
    assert_ne!(b[2], shared[2]);
    assert_eq!(m.tokens(B).unwrap(), [1, 2, 3, 4, 5]);
    assert_eq!(m.tokens(A).unwrap(), [1, 2, 3, 4, 5, 6]);
    checked(&m);
}

#[test]
fn drop_and_resume_reports_what_to_recompute() {
    let mut m = BlockManager::new(4, 4, 0);
    let prompt: Vec<u32> = (0..10).collect();
    m.add_sequence(A, &prompt).unwrap();
    m.append_token(A, 10).unwrap();
    m.drop_for_recompute(A).unwrap();
    assert_eq!(m.residency(A), Ok(Residency::Dropped));
    assert_eq!(
        m.block_table(A),
        Err(BlockError::NotOnDevice(A, Residency::Dropped))
    );
    assert_eq!(m.num_tokens(A), Ok(11));
    assert_eq!((m.num_free_blocks(), m.num_cached_blocks()), (2, 2));
    // Its full blocks are still cached: only the partial block is recomputed.
    let resumed = m.resume(A).unwrap();
    assert_eq!(
        (resumed.num_tokens, resumed.num_tokens_to_compute()),
        (11, 3)
    );
    assert_eq!(m.tokens(A).unwrap(), (0..11).collect::<Vec<_>>());

    m.drop_for_recompute(A).unwrap();
    m.add_sequence(B, &[0; 16]).unwrap();
    let oob = BlockError::OutOfBlocks {
        needed: 3,
        available: 0,
    };
    assert_eq!(m.resume(A), Err(oob));
    m.free_sequence(B).unwrap();
    assert_eq!(m.resume(A).unwrap().num_tokens_to_compute(), 11);
    checked(&m);
}

#[test]
fn an_empty_prompt_gets_blocks_as_it_grows() {
    let mut m = BlockManager::new(2, 2, 0);
    assert_eq!(m.add_sequence(A, &[]).unwrap().num_tokens_to_compute(), 0);
    assert!(table(&m, A).is_empty());
    for t in 0..4 {
        m.append_token(A, t).unwrap();
    }
    assert_eq!(table(&m, A).len(), 2);
    assert!(m.append_token(A, 4).is_err());
    checked(&m);
}

/// A serving-like load: a shared system prompt, decode steps, forks, frees. It shows that the
/// per-operation cost does not grow with the history (a million operations in release builds
/// take well under a second; this runs 200k in a debug build).
#[test]
fn steady_state_load_stays_consistent() {
    let mut m = BlockManager::new(512, 16, 64);
    let system: Vec<u32> = (0..64).collect();
    let mut live: Vec<SeqId> = Vec::new();
    let mut next = 0u64;
    let mut ops = 0usize;
    while ops < 200_000 {
        if live.len() < 24 {
            let mut prompt = system.clone();
            prompt.extend((0..next % 40).map(|t| (t * 7 + next) as u32));
            if m.add_sequence(SeqId(next), &prompt).is_ok() {
                live.push(SeqId(next));
            }
            next += 1;
        }
        let mut forks = Vec::new();
        for &id in &live {
            ops += 1;
            if m.append_token(id, (ops % 101) as u32).is_err() || m.num_tokens(id).unwrap() > 300 {
                m.free_sequence(id).unwrap();
            } else if ops % 97 == 0 {
                m.fork(id, SeqId(next)).unwrap();
                forks.push(SeqId(next));
                next += 1;
            }
        }
        live.retain(|&id| m.residency(id).is_ok());
        live.extend(forks);
    }
    checked(&m);
}

fn hashes(m: &BlockManager, blocks: &[u32]) -> Vec<Option<BlockHash>> {
    blocks.iter().map(|&b| m.device.meta(b).hash).collect()
}

#[test]
fn compacting_a_forked_sequence_keeps_the_siblings_blocks() {
    let mut m = BlockManager::new(16, 4, 0);
    let prompt: Vec<u32> = (0..10).collect();
    m.add_sequence(A, &prompt).unwrap();
    m.fork(A, B).unwrap();
    let shared = table(&m, A);
    let kept = [0, 2, 5, 6, 9];
    let plan = compact(&mut m, A, &kept).unwrap();
    assert_eq!(
        (plan.old_table.as_slice(), plan.kept.as_slice()),
        (&shared[..], &[kept.to_vec()][..])
    );
    assert_eq!(plan.new_table, table(&m, A));
    assert_eq!(plan.new_table.len(), 2);
    assert!(plan.new_table.iter().all(|b| !shared.contains(b)));
    assert_eq!(m.tokens(A).unwrap(), [0, 2, 5, 6, 9]);
    assert_eq!(m.num_tokens(A), Ok(5));
    assert_eq!(
        (m.is_compacted(A), m.is_compacted(B)),
        (Ok(true), Ok(false))
    );
    // B keeps every old block, now alone; A holds its fresh blocks alone.
    assert_eq!(table(&m, B), shared);
    assert_eq!(m.tokens(B).unwrap(), prompt);
    assert!(shared.iter().all(|&b| m.refcount(b) == 1));
    assert!(plan.new_table.iter().all(|&b| m.refcount(b) == 1));
    assert_eq!(m.num_free_blocks(), 16 - 5);
    checked(&m);
    // B's partial block is no longer shared: written in place. Its full blocks are still
    // registered: a prompt with B's prefix finds them.
    let out = m.append_token(B, 10).unwrap();
    assert_eq!((out.block, out.copy), (shared[2], None));
    assert_eq!(
        m.add_sequence(C, &prompt[..9]).unwrap().num_cached_tokens,
        8
    );
    assert_eq!(table(&m, C)[..2], shared[..2]);

    // A fork of the compacted sequence shares its blocks and is compacted too; its copy on
    // write of the shared partial block is unhashed as well, and stays so when it fills.
    m.fork(A, SeqId(4)).unwrap();
    assert_eq!(m.is_compacted(SeqId(4)), Ok(true));
    assert!(plan.new_table.iter().all(|&b| m.refcount(b) == 2));
    let out = m.append_token(SeqId(4), 11).unwrap();
    let copy = out.copy.expect("the partial block is shared");
    assert_eq!(copy.src, plan.new_table[1]);
    for t in 12..15 {
        m.append_token(SeqId(4), t).unwrap();
    }
    assert_eq!(m.tokens(SeqId(4)).unwrap(), [0, 2, 5, 6, 9, 11, 12, 13, 14]);
    assert_eq!(hashes(&m, &table(&m, SeqId(4))), [None; 3]);
    assert_eq!(m.tokens(A).unwrap(), kept.map(|t| t as u32));
    checked(&m);
}

#[test]
fn a_compacted_block_is_never_reused_for_a_prompt() {
    let mut m = BlockManager::new(16, 2, 8);
    m.add_sequence(A, &[9, 1, 2, 3, 4]).unwrap();
    let plan = compact(&mut m, A, &[1, 2, 3, 4]).unwrap();
    // Two full blocks [1, 2] [3, 4]: the token ids of the prompt below, but not its K/V.
    assert_eq!(m.tokens(A).unwrap(), [1, 2, 3, 4]);
    assert_eq!(hashes(&m, &plan.new_table), [None, None]);
    // The old full blocks are cached, the old partial one is free.
    assert_eq!((m.num_cached_blocks(), m.num_free_blocks()), (2, 12));
    let hit = m.add_sequence(B, &[1, 2, 3, 4]).unwrap();
    assert_eq!(hit.num_cached_tokens, 0);
    let b = table(&m, B);
    assert!(b.iter().all(|x| !plan.new_table.contains(x)));

    // Back from the host, A shares neither B's blocks (same token ids, a prompt's K/V) nor
    // those of its fork C (the same K/V, but unhashed): every block is copied back.
    m.fork(A, C).unwrap();
    swap_out(&mut m, A).unwrap();
    let back = swap_in(&mut m, A).unwrap();
    assert_eq!(back.pairs.len(), 2);
    let a = table(&m, A);
    assert!(a
        .iter()
        .all(|x| !b.contains(x) && !table(&m, C).contains(x)));
    assert!(b.iter().all(|&x| m.refcount(x) == 1));
    assert_eq!(m.tokens(A).unwrap(), [1, 2, 3, 4]);
    assert_eq!(m.is_compacted(A), Ok(true));
    checked(&m);

    // Released, compacted blocks go to the free list, never to the cache.
    let cached = m.num_cached_blocks();
    m.free_sequence(A).unwrap();
    m.free_sequence(C).unwrap();
    assert_eq!(m.num_cached_blocks(), cached);
    m.free_sequence(B).unwrap();
    assert_eq!(m.num_cached_blocks(), cached + 2);
    assert_eq!(
        m.add_sequence(A, &[1, 2, 3, 4, 5])
            .unwrap()
            .num_cached_tokens,
        4
    );
    assert_eq!(table(&m, A)[..2], b);
    checked(&m);
}

#[test]
fn appending_after_compaction_fills_blocks_without_hashes() {
    let mut m = BlockManager::new(8, 2, 0);
    m.add_sequence(A, &[7, 7, 1, 2, 3]).unwrap();
    // Keep 3 tokens: a full block and a partial one, which appends fill.
    let plan = compact(&mut m, A, &[2, 3, 4]).unwrap();
    for t in [4, 5, 6] {
        m.append_token(A, t).unwrap();
    }
    let a = table(&m, A);
    assert_eq!((&a[..2], a.len()), (&plan.new_table[..], 3));
    assert_eq!(m.tokens(A).unwrap(), [1, 2, 3, 4, 5, 6]);
    assert_eq!(hashes(&m, &a), [None; 3]);
    assert_eq!(
        m.add_sequence(B, &[1, 2, 3, 4, 5, 6])
            .unwrap()
            .num_cached_tokens,
        0
    );
    checked(&m);

    // Compacted to nothing: the next block is the sequence's first, and still unhashed (a
    // chain from nothing would be the hash of the prompt [1, 2]).
    let plan = compact(&mut m, A, &[]).unwrap();
    assert_eq!((plan.old_table, plan.new_table), (a, vec![]));
    assert_eq!((m.num_tokens(A), table(&m, A).len()), (Ok(0), 0));
    m.append_token(A, 1).unwrap();
    m.append_token(A, 2).unwrap();
    assert_eq!(hashes(&m, &table(&m, A)), [None]);
    assert_eq!(m.add_sequence(C, &[1, 2, 0]).unwrap().num_cached_tokens, 2);
    assert_eq!(table(&m, C)[0], table(&m, B)[0]);
    checked(&m);
}

#[test]
fn compaction_out_of_blocks_changes_nothing() {
    let mut m = BlockManager::new(4, 2, 0);
    m.add_sequence(A, &[1, 2, 3, 4, 5, 6]).unwrap();
    // 1 free block: keeping 3 tokens needs 2 fresh blocks while A's 3 old ones are held,
    // although A would end up with fewer.
    let before = m.clone();
    let oob = |needed, available| Err(BlockError::OutOfBlocks { needed, available });
    assert_eq!(compact(&mut m, A, &[0, 2, 4]), oob(2, 1));
    assert_eq!(m, before);
    // Keeping 2 fits in the free block.
    let plan = compact(&mut m, A, &[0, 5]).unwrap();
    assert_eq!(m.tokens(A).unwrap(), [1, 6]);
    // A's old blocks are all full, so all cached: compaction may evict them, oldest first
    // (A's tail).
    assert_eq!((m.num_free_blocks(), m.num_cached_blocks()), (0, 3));
    let again = compact(&mut m, A, &[1]).unwrap();
    assert_eq!(again.new_table, plan.old_table[2..]);
    assert_eq!(m.tokens(A).unwrap(), [6]);
    // Every block held: even keeping A's single token needs a fresh block.
    m.add_sequence(B, &[8; 6]).unwrap();
    let before = m.clone();
    assert_eq!(compact(&mut m, A, &[0]), oob(1, 0));
    assert_eq!(m, before);
    checked(&m);
}

#[test]
fn invalid_kept_lists_are_refused() {
    use BlockError::*;
    let mut m = BlockManager::new(8, 2, 3);
    m.add_sequence(A, &[1, 2, 3, 4, 5]).unwrap();
    let before = m.clone();
    let invalid = |index, position| {
        Err(InvalidKept {
            id: A,
            head: 0,
            index,
            position,
            num_tokens: 5,
        })
    };
    assert_eq!(compact(&mut m, A, &[0, 5]), invalid(1, 5));
    assert_eq!(compact(&mut m, A, &[9]), invalid(0, 9));
    assert_eq!(compact(&mut m, A, &[1, 1]), invalid(1, 1));
    assert_eq!(compact(&mut m, A, &[0, 3, 2, 4]), invalid(2, 2));
    assert_eq!(
        invalid(2, 2).unwrap_err().to_string(),
        "kept positions of sequence 1 must be strictly increasing and below its 5 tokens: \
         kept[0][2] = 2 is not"
    );
    assert_eq!(compact(&mut m, B, &[]), Err(UnknownSequence(B)));
    assert_eq!(m, before);
    swap_out(&mut m, A).unwrap();
    let before = m.clone();
    assert_eq!(
        compact(&mut m, A, &[0]),
        Err(NotOnDevice(A, Residency::Host))
    );
    assert_eq!(m, before);
    checked(&m);
}

#[test]
fn a_resumed_compacted_sequence_is_a_prompt_again() {
    let mut m = BlockManager::new(8, 2, 0);
    m.add_sequence(A, &[7, 1, 2, 3]).unwrap();
    compact(&mut m, A, &[1, 2, 3]).unwrap();
    m.add_sequence(B, &[1, 2, 9]).unwrap();
    m.drop_for_recompute(A).unwrap();
    assert_eq!(m.is_compacted(A), Ok(false));
    assert_eq!(m.tokens(A).unwrap(), [1, 2, 3]);
    // Recomputed as the prompt [1, 2, 3], its first block is the prompt [1, 2]'s: B's.
    assert_eq!(m.resume(A).unwrap().num_cached_tokens, 2);
    assert_eq!(table(&m, A)[0], table(&m, B)[0]);
    // And the blocks it fills are registered again.
    m.append_token(A, 4).unwrap();
    assert_eq!(
        m.add_sequence(C, &[1, 2, 3, 4, 5])
            .unwrap()
            .num_cached_tokens,
        4
    );
    assert_eq!(table(&m, C)[..2], table(&m, A));
    checked(&m);
}

fn heads_manager(
    num_blocks: usize,
    block_size: usize,
    kv_heads: usize,
    hash: PrefixHash,
) -> BlockManager {
    BlockManager::with_options(Options {
        num_blocks,
        block_size,
        num_host_blocks: 8,
        kv_heads,
        hash,
    })
}

#[test]
fn compaction_keeps_other_tokens_per_kv_head_and_the_next_position() {
    let mut m = heads_manager(16, 4, 2, PrefixHash::Fast);
    let prompt: Vec<u32> = (10..20).collect();
    m.add_sequence(A, &prompt).unwrap();
    let kept = vec![vec![0, 1, 9], vec![3, 4, 5]];
    let plan = m.compact(A, &kept).unwrap();
    assert_eq!((plan.num_kept(), plan.next_position), (3, 10));
    assert_eq!(
        m.head_tokens(A).unwrap(),
        [vec![10, 11, 19], vec![13, 14, 15]]
    );
    assert_eq!(m.tokens(A), Err(BlockError::HeadsDiffer(A)));
    assert_eq!(m.num_tokens(A), Ok(3));
    assert_eq!(m.next_position(A), Ok(10));
    m.complete(plan.ticket).unwrap();
    // The next token rotates at position 10, not 3, and goes to slot 3 of every head.
    let out = m.append_token(A, 20).unwrap();
    assert_eq!((out.position, out.offset), (10, 3));
    assert_eq!(m.next_position(A), Ok(11));
    assert_eq!(
        m.head_tokens(A).unwrap(),
        [vec![10, 11, 19, 20], vec![13, 14, 15, 20]]
    );
    // No prompt recomputes what each head kept.
    assert_eq!(m.drop_for_recompute(A), Err(BlockError::HeadsDiffer(A)));
    // The kernel keeps one count per sequence, and one list per kv head.
    use BlockError::*;
    let before = m.clone();
    assert_eq!(
        m.compact(A, &[vec![0]]),
        Err(KeptHeads {
            id: A,
            got: 1,
            kv_heads: 2
        })
    );
    assert_eq!(
        m.compact(A, &[vec![0, 1], vec![2]]),
        Err(KeptLengths {
            id: A,
            head: 1,
            len: 1,
            first: 2
        })
    );
    assert_eq!(
        m.compact(A, &[vec![0], vec![4]]),
        Err(InvalidKept {
            id: A,
            head: 1,
            index: 0,
            position: 4,
            num_tokens: 4
        })
    );
    assert_eq!(m, before);
    // Swapped out and back, each head's tokens come back where they were.
    swap_out(&mut m, A).unwrap();
    swap_in(&mut m, A).unwrap();
    assert_eq!(
        m.head_tokens(A).unwrap(),
        [vec![10, 11, 19, 20], vec![13, 14, 15, 20]]
    );
    // Once the heads agree again (both keep the appended token), a resumed sequence is a prompt
    // again: positions from 0.
    let same = vec![vec![3]; 2];
    let plan = m.compact(A, &same).unwrap();
    m.complete(plan.ticket).unwrap();
    m.drop_for_recompute(A).unwrap();
    m.resume(A).unwrap();
    assert_eq!(m.next_position(A), Ok(1));
    checked(&m);
}

#[test]
fn blocks_a_pending_move_reads_are_not_handed_out_before_it_completes() {
    let mut m = BlockManager::new(4, 2, 4);
    m.add_sequence(A, &[1, 2, 3]).unwrap();
    let old = table(&m, A);
    let plan = m.compact(A, &[vec![2]]).unwrap();
    // A's old blocks are pinned: the free list and the cache hold only the untouched block.
    assert_eq!((m.num_free_blocks(), m.num_cached_blocks()), (1, 0));
    assert!(old.iter().all(|&b| m.refcount(b) == 0 && m.pins(b) == 1));
    checked(&m);
    // Nothing but the free block can be allocated, and the sequence waits for its gather.
    assert!(m.add_sequence(B, &[7, 7, 7]).is_err());
    assert_eq!(
        m.append_token(A, 4),
        Err(BlockError::MovePending(A, plan.ticket))
    );
    assert_eq!(m.swap_out(A), Err(BlockError::MovePending(A, plan.ticket)));
    // Freed meanwhile, its fresh block stays pinned too: the gather still writes it.
    m.free_sequence(A).unwrap();
    assert_eq!(m.num_free_blocks(), 1);
    checked(&m);
    m.complete(plan.ticket).unwrap();
    assert_eq!(
        m.complete(plan.ticket),
        Err(BlockError::UnknownTicket(plan.ticket))
    );
    // The old full block is cached again, the partial old and the fresh one are free.
    assert_eq!((m.num_free_blocks(), m.num_cached_blocks()), (3, 1));
    assert_eq!(m.pending_moves().count(), 0);
    checked(&m);

    // Swap-out: the host slots it writes stay pinned while the sequence is freed.
    m.add_sequence(B, &[5, 6, 7]).unwrap();
    let out = m.swap_out(B).unwrap();
    m.free_sequence(B).unwrap();
    assert_eq!(m.num_free_host_slots(), 2);
    m.complete(out.ticket).unwrap();
    assert_eq!(m.num_free_host_slots(), 4);
    checked(&m);
}

#[test]
fn swapped_in_blocks_are_shared_by_prompts_only_once_their_copy_completes() {
    let mut m = BlockManager::new(8, 2, 4);
    m.add_sequence(A, &[1, 2, 3, 4, 5]).unwrap();
    swap_out(&mut m, A).unwrap();
    // Evict A's cached blocks, so that swap-in copies them.
    m.add_sequence(B, &[9; 16]).unwrap();
    m.free_sequence(B).unwrap();
    m.add_sequence(B, &[8; 16]).unwrap();
    m.free_sequence(B).unwrap();
    let back = m.swap_in(A).unwrap();
    assert_eq!(back.pairs.len(), 3);
    assert_eq!(
        m.add_sequence(C, &[1, 2, 3, 4, 0])
            .unwrap()
            .num_cached_tokens,
        0
    );
    m.free_sequence(C).unwrap();
    m.complete(back.ticket).unwrap();
    assert_eq!(
        m.add_sequence(C, &[1, 2, 3, 4, 0])
            .unwrap()
            .num_cached_tokens,
        4
    );
    checked(&m);
}

#[test]
fn a_full_prompt_hit_leaves_the_last_token_to_compute() {
    let mut m = BlockManager::new(8, 2, 0);
    let prompt = [1, 2, 3, 4];
    m.add_sequence(A, &prompt).unwrap();
    // Both blocks are cached, but the last token is computed for its logits: its block is new.
    let hit = m.add_sequence(B, &prompt).unwrap();
    assert_eq!((hit.num_cached_tokens, hit.num_tokens_to_compute()), (2, 2));
    assert_eq!(table(&m, B)[0], table(&m, A)[0]);
    assert_ne!(table(&m, B)[1], table(&m, A)[1]);
    // One token more and every full block hits.
    assert_eq!(
        m.add_sequence(C, &[1, 2, 3, 4, 5])
            .unwrap()
            .num_cached_tokens,
        4
    );
    assert_eq!(m.add_sequence(SeqId(4), &[]).unwrap().num_cached_tokens, 0);
    assert_eq!(m.add_sequence(SeqId(5), &[1]).unwrap().num_cached_tokens, 0);
    checked(&m);
}

/// Two blocks of `block_size` tokens whose truncated hashes (from no parent) collide.
fn colliding_blocks(hash: PrefixHash, block_size: u32) -> (Vec<u32>, Vec<u32>) {
    let block = |i: u32| {
        (0..block_size)
            .map(|t| i * block_size + t)
            .collect::<Vec<_>>()
    };
    let first = block(0);
    let h = hash.chain(None, &first);
    let other = (1..).map(block).find(|b| hash.chain(None, b) == h).unwrap();
    (first, other)
}

#[test]
fn hash_collisions_are_misses_in_release_builds_too() {
    let hash = PrefixHash::Truncated(2);
    let (a, b) = colliding_blocks(hash, 2);
    let mut m = heads_manager(8, 2, 1, hash);
    let with = |block: &[u32]| [block, &[0]].concat();
    m.add_sequence(A, &with(&a)).unwrap();
    // B's first block has A's hash, not A's tokens: computed, not shared.
    let miss = m.add_sequence(B, &with(&b)).unwrap();
    assert_eq!(miss.num_cached_tokens, 0);
    assert_ne!(table(&m, B)[0], table(&m, A)[0]);
    assert_eq!(m.stats().hash_collisions, 1);
    assert_eq!(m.tokens(B).unwrap(), with(&b));
    // Swapped back in, B's block finds A's under its hash and copies rather than share it.
    swap_out(&mut m, B).unwrap();
    let back = swap_in(&mut m, B).unwrap();
    assert_eq!(back.pairs.len(), 2);
    assert_eq!(m.stats().hash_collisions, 2);
    assert_eq!(m.tokens(B).unwrap(), with(&b));
    checked(&m);
}

#[test]
fn sha256_shares_blocks_like_the_fast_hash() {
    let prompt: Vec<u32> = (0..9).collect();
    let (fast, sha) = (PrefixHash::Fast, PrefixHash::Sha256);
    assert_ne!(
        fast.chain(None, &prompt[..4]),
        sha.chain(None, &prompt[..4])
    );
    assert_ne!(
        sha.chain(None, &prompt[..4]),
        sha.chain(None, &prompt[1..5])
    );
    let first = sha.chain(None, &prompt[..4]);
    assert_ne!(
        sha.chain(Some(first), &prompt[4..8]),
        sha.chain(None, &prompt[4..8])
    );
    for hash in [fast, sha] {
        let mut m = heads_manager(8, 4, 1, hash);
        m.add_sequence(A, &prompt).unwrap();
        assert_eq!(m.add_sequence(B, &prompt).unwrap().num_cached_tokens, 8);
        checked(&m);
    }
}

#[test]
fn stats_count_hits_evictions_and_preemptions() {
    let mut m = BlockManager::new(4, 2, 4);
    m.add_sequence(A, &[1, 2, 3, 4, 5]).unwrap();
    m.add_sequence(B, &[1, 2, 3, 4, 6]).unwrap();
    m.free_sequence(A).unwrap();
    m.free_sequence(B).unwrap();
    assert_eq!(m.stats().hit_rate(), 4.0 / 10.0);
    // Three blocks: the free ones (A's and B's partial ones), then the oldest cached one.
    m.add_sequence(C, &[7; 6]).unwrap();
    assert_eq!(m.stats().evicted_blocks, 1);
    swap_out(&mut m, C).unwrap();
    swap_in(&mut m, C).unwrap();
    m.drop_for_recompute(C).unwrap();
    let s = *m.stats();
    assert_eq!(
        (
            s.prompt_tokens,
            s.cached_tokens,
            s.swapped_out,
            s.dropped_for_recompute
        ),
        (16, 4, 1, 1)
    );
    assert_eq!(s.preemptions(), 2);
    // A failed operation counts nothing.
    m.add_sequence(A, &[9; 12]).unwrap_err();
    assert_eq!(*m.stats(), s);
}
