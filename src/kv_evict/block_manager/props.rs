//! The property test: random operations against a shadow model and a simulated GPU whose copies
//! (swaps, compaction gathers) run only when the test completes their ticket, in a random
//! interleaving with later operations.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The sequence ids the property test uses: few, so that ids are reused and prefixes collide.
const IDS: u64 = 4;

/// An operation before its sequences are chosen: its indices pick them when it runs, mostly
/// among the sequences in the state it needs, so that most operations are valid.
#[derive(Debug, Clone)]
enum Kind {
    Add(Vec<u32>),
    Append(u32),
    Fork,
    Free,
    SwapOut,
    SwapIn,
    Drop,
    Resume,
    /// `(seed, density, per_head)`: keeps each token with probability `density / 4` (none at 0,
    /// all at 4), the same tokens in every kv head or as many chosen per head; density 5 makes
    /// an invalid position, 6 lists of unequal lengths (or one list too many).
    Compact(u64, u32, bool),
    /// Runs the copy of a pending move and completes its ticket (or an unknown ticket).
    Complete,
}

#[derive(Debug, Clone)]
enum Op {
    Add(SeqId, Vec<u32>),
    Append(SeqId, u32),
    Fork(SeqId, SeqId),
    Free(SeqId),
    SwapOut(SeqId),
    SwapIn(SeqId),
    Drop(SeqId),
    Resume(SeqId),
    Compact(SeqId, Vec<Vec<usize>>),
    Complete(Ticket),
}

fn kind() -> impl Strategy<Value = Kind> {
    // A 3-token alphabet, so that prompts share prefixes.
    let token = || 0..3u32;
    prop_oneof![
        5 => vec(token(), 0..12).prop_map(Kind::Add),
        8 => token().prop_map(Kind::Append),
        3 => Just(Kind::Fork),
        2 => Just(Kind::Free),
        2 => Just(Kind::SwapOut),
        2 => Just(Kind::SwapIn),
        1 => Just(Kind::Drop),
        2 => Just(Kind::Resume),
        3 => (any::<u64>(), 0..=6u32, any::<bool>())
            .prop_map(|(seed, density, per_head)| Kind::Compact(seed, density, per_head)),
        5 => Just(Kind::Complete),
    ]
}

/// What the K/V of a token was computed from. The model gives a token computed as part of a
/// prompt (or appended to one) a label that is a function of the token ids up to it, and a
/// token appended to a compacted sequence a label of its own: its K/V attends to the kept
/// tokens only. A kept token keeps its label, in the kv head that kept it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kv {
    Prompt(u64),
    Fresh(u64),
}

/// The labels of a prompt's tokens, chained so that each names the token ids up to it.
fn prompt_kv(prev: Option<Kv>, token: u32) -> Kv {
    let prev = match prev {
        None => 0,
        Some(Kv::Prompt(h)) => h,
        Some(Kv::Fresh(_)) => panic!("a prompt's K/V follows prompt K/V only"),
    };
    let mut hasher = DefaultHasher::new();
    (prev, token).hash(&mut hasher);
    Kv::Prompt(hasher.finish())
}

fn prompt_kvs(tokens: &[u32]) -> Vec<Kv> {
    let mut prev = None;
    tokens
        .iter()
        .map(|&t| *prev.insert(prompt_kv(prev, t)))
        .collect()
}

/// The shadow model of one live sequence.
#[derive(Debug, Clone)]
struct Entry {
    /// Each kv head's token ids.
    heads: Vec<Vec<u32>>,
    residency: Residency,
    /// Each kv head's K/V labels (empty while dropped).
    kv: Vec<Vec<Kv>>,
    compacted: bool,
    next_position: usize,
    /// The move its blocks wait for: its K/V is where the plan says only once it completes.
    pending: Option<Ticket>,
}

impl Entry {
    fn len(&self) -> usize {
        self.heads[0].len()
    }

    fn heads_agree(&self) -> bool {
        self.heads.iter().all(|h| *h == self.heads[0])
    }
}

/// A plan whose copy has not run yet.
#[derive(Debug, Clone)]
enum Move {
    Swap(SwapPlan),
    Compact(CompactPlan),
}

/// The GPU side, simulated: the K/V label in each (page, kv head, slot) of the device blocks and
/// host slots, as the caller writes them (prompt tokens past the cached prefix, appended tokens,
/// copies on write: at once) and moves them (swap and compaction plans: when their ticket
/// completes).
struct Gpu {
    block_size: usize,
    kv_heads: usize,
    device: Vec<Option<Kv>>,
    host: Vec<Option<Kv>>,
    next_fresh: u64,
    moves: Vec<(Ticket, Move)>,
}

impl Gpu {
    fn slot(&self, pages: &[u32], i: usize, h: usize) -> usize {
        (pages[i / self.block_size] as usize * self.kv_heads + h) * self.block_size
            + i % self.block_size
    }

    /// Writes the labels of tokens `from..` of every kv head.
    fn write(&mut self, table: &[u32], kv: &[Vec<Kv>], from: usize) {
        for (h, head) in kv.iter().enumerate() {
            for (i, &kv) in head.iter().enumerate().skip(from) {
                let slot = self.slot(table, i, h);
                self.device[slot] = Some(kv);
            }
        }
    }

    /// Copies a whole page (`span` slots: every kv head) from one pool to another.
    fn copy_page(span: usize, from: &[Option<Kv>], s: u32, to: &mut [Option<Kv>], d: u32) {
        let (s, d) = (s as usize * span, d as usize * span);
        to[d..d + span].copy_from_slice(&from[s..s + span]);
    }

    fn run(&mut self, m: &Move) {
        match m {
            Move::Swap(plan) => {
                let span = self.kv_heads * self.block_size;
                let (mut device, mut host) = (
                    std::mem::take(&mut self.device),
                    std::mem::take(&mut self.host),
                );
                for &(src, dst) in &plan.pairs {
                    match plan.direction {
                        SwapDirection::DeviceToHost => {
                            Gpu::copy_page(span, &device, src, &mut host, dst)
                        }
                        SwapDirection::HostToDevice => {
                            Gpu::copy_page(span, &host, src, &mut device, dst)
                        }
                    }
                }
                (self.device, self.host) = (device, host);
            }
            Move::Compact(plan) => {
                // No snapshot: the tables are disjoint, so the gather's order is free.
                for (h, kept) in plan.kept.iter().enumerate() {
                    for (j, &p) in kept.iter().enumerate() {
                        let src = self.slot(&plan.old_table, p, h);
                        let dst = self.slot(&plan.new_table, j, h);
                        self.device[dst] = self.device[src];
                    }
                }
            }
        }
    }
}

/// Everything the test tracks beside the manager.
struct World {
    shadow: HashMap<SeqId, Entry>,
    gpu: Gpu,
    stats: Stats,
}

/// One of the ids whose entry `fits`, or one time in 4n+1 (always, if none fits) any id.
fn pick(world: &World, index: &Index, fits: impl Fn(Option<&Entry>) -> bool) -> SeqId {
    let ids: Vec<SeqId> = (0..IDS)
        .map(SeqId)
        .filter(|id| fits(world.shadow.get(id)))
        .collect();
    let any = SeqId(index.index(IDS as usize) as u64);
    ids.get(index.index(4 * ids.len() + 1) / 4)
        .copied()
        .unwrap_or(any)
}

/// The positions of `0..n` that a compaction of `(seed, density)` keeps (density 0..=4).
fn kept_positions(n: usize, seed: u64, density: u32) -> Vec<usize> {
    let keep = |p: usize| {
        let mut hasher = DefaultHasher::new();
        (seed, p).hash(&mut hasher);
        hasher.finish() % 4 < u64::from(density)
    };
    (0..n).filter(|&p| keep(p)).collect()
}

/// The kept lists of a compaction of a sequence of `n` tokens with `heads` kv heads.
fn kept_lists(
    n: usize,
    heads: usize,
    (seed, density, per_head): (u64, u32, bool),
) -> Vec<Vec<usize>> {
    let first = kept_positions(n, seed, density.min(4));
    let mut lists: Vec<Vec<usize>> = (0..heads)
        .map(|h| {
            if !per_head || h == 0 {
                return first.clone();
            }
            // As many tokens, other ones: sorted by a per-head key, the first k kept.
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by_key(|&p| {
                let mut hasher = DefaultHasher::new();
                (seed, h, p).hash(&mut hasher);
                hasher.finish()
            });
            let mut list = order[..first.len()].to_vec();
            list.sort_unstable();
            list
        })
        .collect();
    let victim = seed as usize % heads;
    match density {
        5 => {
            // Invalid: a position past the end, or a repeated one.
            let list = &mut lists[victim];
            match list.len() {
                len if len == 0 || seed % 2 == 0 => list.push(n + (seed % 3) as usize),
                len => {
                    let i = (seed as usize / 2) % len;
                    list.insert(i, list[i]);
                }
            }
        }
        6 if heads == 1 => lists.push(first),
        6 => {
            let last = lists.last_mut().expect("heads > 1");
            if last.pop().is_none() {
                last.push(0);
            }
        }
        _ => {}
    }
    lists
}

fn resolve(world: &World, m: &BlockManager, (kind, a, b): &(Kind, Index, Index)) -> Op {
    let ready = |want| {
        move |e: Option<&Entry>| e.is_some_and(|e| e.residency == want && e.pending.is_none())
    };
    let device = |index| pick(world, index, ready(Residency::Device));
    match kind {
        Kind::Add(prompt) => Op::Add(pick(world, a, |e| e.is_none()), prompt.clone()),
        Kind::Append(token) => Op::Append(device(a), *token),
        Kind::Fork => Op::Fork(device(a), pick(world, b, |e| e.is_none())),
        Kind::Free => Op::Free(pick(world, a, |e| e.is_some())),
        Kind::SwapOut => Op::SwapOut(device(a)),
        Kind::SwapIn => Op::SwapIn(pick(world, a, ready(Residency::Host))),
        Kind::Drop => Op::Drop(device(a)),
        Kind::Resume => Op::Resume(pick(world, a, ready(Residency::Dropped))),
        &Kind::Compact(seed, density, per_head) => {
            let id = device(a);
            let n = world.shadow.get(&id).map_or(0, Entry::len);
            Op::Compact(id, kept_lists(n, m.kv_heads(), (seed, density, per_head)))
        }
        Kind::Complete => {
            let moves = &world.gpu.moves;
            // One time in 8, a ticket no move has (or has any more).
            let i = a.index(8 * moves.len() + 1);
            Op::Complete(
                moves
                    .get(i / 8)
                    .map_or(Ticket(u64::MAX - (i % 2) as u64), |m| m.0),
            )
        }
    }
}

/// The error the shadow model predicts from sequence states alone (not from capacity).
fn expected_error(world: &World, kv_heads: usize, op: &Op) -> Option<BlockError> {
    let entry = |id: SeqId| world.shadow.get(&id);
    let need = |id, want, err: fn(SeqId, Residency) -> BlockError| match entry(id) {
        None => Some(BlockError::UnknownSequence(id)),
        Some(e) if e.pending.is_some() => Some(BlockError::MovePending(id, e.pending.unwrap())),
        Some(e) if e.residency != want => Some(err(id, e.residency)),
        Some(_) => None,
    };
    let on_device = |id| need(id, Residency::Device, BlockError::NotOnDevice);
    let exists = |id| entry(id).map(|_| BlockError::SequenceExists(id));
    match *op {
        Op::Add(id, _) => exists(id),
        Op::Append(id, _) | Op::SwapOut(id) => on_device(id),
        Op::Drop(id) => on_device(id)
            .or_else(|| (!world.shadow[&id].heads_agree()).then_some(BlockError::HeadsDiffer(id))),
        Op::Fork(parent, child) => on_device(parent).or_else(|| exists(child)),
        Op::Free(id) => entry(id)
            .is_none()
            .then_some(BlockError::UnknownSequence(id)),
        Op::SwapIn(id) => need(id, Residency::Host, BlockError::NotSwapped),
        Op::Resume(id) => need(id, Residency::Dropped, BlockError::NotDropped),
        Op::Compact(id, ref kept) => on_device(id).or_else(|| {
            if kept.len() != kv_heads {
                let got = kept.len();
                return Some(BlockError::KeptHeads { id, got, kv_heads });
            }
            let num_tokens = world.shadow[&id].len();
            let first = kept[0].len();
            kept.iter().enumerate().find_map(|(head, list)| {
                if list.len() != first {
                    let len = list.len();
                    return Some(BlockError::KeptLengths {
                        id,
                        head,
                        len,
                        first,
                    });
                }
                let bad = |i: usize| list[i] >= num_tokens || (i > 0 && list[i] <= list[i - 1]);
                let index = (0..list.len()).find(|&i| bad(i))?;
                Some(BlockError::InvalidKept {
                    id,
                    head,
                    index,
                    position: list[index],
                    num_tokens,
                })
            })
        }),
        Op::Complete(ticket) => (!world.gpu.moves.iter().any(|m| m.0 == ticket))
            .then_some(BlockError::UnknownTicket(ticket)),
    }
}

/// Runs one operation on the manager, the shadow and the simulated GPU; checks what the shadow
/// can predict: the state errors, when capacity errors must (and must not) happen, that failures
/// change nothing, and the counters.
fn step(m: &mut BlockManager, world: &mut World, op: &Op) -> Result<(), TestCaseError> {
    let before = m.clone();
    let bs = m.block_size();
    let heads = m.kv_heads();
    let expected = expected_error(world, heads, op);
    // Blocks the operation takes from the pool: free ones first, then evicted cached ones.
    let mut taken = 0;
    let result = match op {
        Op::Add(id, prompt) => m.add_sequence(*id, prompt).map(|a| {
            assert!(a.num_cached_tokens % bs == 0);
            assert!(
                a.num_cached_tokens <= prompt.len().saturating_sub(1),
                "the last token is computed"
            );
            taken = prompt.len().div_ceil(bs) - a.num_cached_tokens / bs;
            world.stats.prompt_tokens += prompt.len() as u64;
            world.stats.cached_tokens += a.num_cached_tokens as u64;
            let kv = vec![prompt_kvs(prompt); heads];
            world
                .gpu
                .write(m.block_table(*id).unwrap(), &kv, a.num_cached_tokens);
            let entry = Entry {
                heads: vec![prompt.clone(); heads],
                residency: Residency::Device,
                kv,
                compacted: false,
                next_position: prompt.len(),
                pending: None,
            };
            world.shadow.insert(*id, entry);
        }),
        Op::Append(id, token) => {
            // Needs a block iff the last block is full, or partial and shared.
            let needs_block = expected.is_none() && {
                let partial = world.shadow[id].len() % bs != 0;
                !partial || m.refcount(*m.block_table(*id).unwrap().last().unwrap()) > 1
            };
            let result = m.append_token(*id, *token);
            if needs_block {
                prop_assert_eq!(result.is_ok(), before.can_allocate(1));
            }
            result.map(|out| {
                taken = usize::from(needs_block);
                let gpu = &mut world.gpu;
                let e = world.shadow.get_mut(id).expect("live");
                assert_eq!(out.offset, e.len() % bs);
                assert_eq!(out.position, e.next_position);
                if let Some(CopyBlock { src, dst }) = out.copy {
                    let device = gpu.device.clone();
                    Gpu::copy_page(heads * bs, &device, src, &mut gpu.device, dst);
                }
                let kv = if e.compacted {
                    gpu.next_fresh += 1;
                    Kv::Fresh(gpu.next_fresh)
                } else {
                    prompt_kv(e.kv[0].last().copied(), *token)
                };
                for h in 0..heads {
                    let slot = (out.block as usize * heads + h) * bs + out.offset;
                    gpu.device[slot] = Some(kv);
                    e.heads[h].push(*token);
                    e.kv[h].push(kv);
                }
                e.next_position += 1;
            })
        }
        Op::Fork(parent, child) => m.fork(*parent, *child).map(|()| {
            let entry = world.shadow[parent].clone();
            world.shadow.insert(*child, entry);
        }),
        Op::Free(id) => m.free_sequence(*id).map(|()| {
            world.shadow.remove(id);
        }),
        Op::SwapOut(id) => {
            let result = m.swap_out(*id);
            if expected.is_none() {
                let blocks = world.shadow[id].len().div_ceil(bs);
                prop_assert_eq!(result.is_ok(), blocks <= before.num_free_host_slots());
            }
            if let Ok(plan) = &result {
                let (blocks, slots): (Vec<u32>, Vec<u32>) = plan.pairs.iter().copied().unzip();
                prop_assert_eq!(blocks, before.block_table(*id).unwrap());
                prop_assert_eq!(slots, m.host_slots(*id).unwrap());
            }
            result.map(|plan| {
                world.stats.swapped_out += 1;
                let e = world.shadow.get_mut(id).expect("live");
                (e.residency, e.pending) = (Residency::Host, Some(plan.ticket));
                world.gpu.moves.push((plan.ticket, Move::Swap(plan)));
            })
        }
        Op::SwapIn(id) => m.swap_in(*id).map(|plan| {
            taken = plan.pairs.len();
            let e = world.shadow.get_mut(id).expect("live");
            (e.residency, e.pending) = (Residency::Device, Some(plan.ticket));
            world.gpu.moves.push((plan.ticket, Move::Swap(plan)));
        }),
        Op::Drop(id) => m.drop_for_recompute(*id).map(|()| {
            world.stats.dropped_for_recompute += 1;
            let e = world.shadow.get_mut(id).expect("live");
            (e.residency, e.kv, e.compacted) = (Residency::Dropped, Vec::new(), false);
        }),
        Op::Resume(id) => m.resume(*id).map(|a| {
            taken = a.num_tokens.div_ceil(bs) - a.num_cached_tokens / bs;
            world.stats.prompt_tokens += a.num_tokens as u64;
            world.stats.cached_tokens += a.num_cached_tokens as u64;
            let e = world.shadow.get_mut(id).expect("live");
            assert_eq!(a.num_tokens, e.len());
            assert!(a.num_cached_tokens <= a.num_tokens.saturating_sub(1));
            e.kv = vec![prompt_kvs(&e.heads[0]); heads];
            world
                .gpu
                .write(m.block_table(*id).unwrap(), &e.kv, a.num_cached_tokens);
            e.residency = Residency::Device;
            e.next_position = e.len();
        }),
        Op::Compact(id, kept) => {
            let result = m.compact(*id, kept);
            let blocks = kept.first().map_or(0, Vec::len).div_ceil(bs);
            if expected.is_none() {
                prop_assert_eq!(result.is_ok(), before.can_allocate(blocks));
            }
            match result {
                Ok(plan) => {
                    taken = blocks;
                    prop_assert_eq!(&plan.old_table, before.block_table(*id).unwrap());
                    prop_assert_eq!(&plan.new_table, m.block_table(*id).unwrap());
                    prop_assert_eq!(&plan.kept, kept);
                    prop_assert!(plan.new_table.iter().all(|b| !plan.old_table.contains(b)));
                    let e = world.shadow.get_mut(id).expect("live");
                    prop_assert_eq!(plan.next_position, e.next_position);
                    for ((tokens, kv), kept) in e.heads.iter_mut().zip(&mut e.kv).zip(kept) {
                        *tokens = kept.iter().map(|&p| tokens[p]).collect();
                        *kv = kept.iter().map(|&p| kv[p]).collect();
                    }
                    (e.compacted, e.pending) = (true, Some(plan.ticket));
                    world.gpu.moves.push((plan.ticket, Move::Compact(plan)));
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Op::Complete(ticket) => m.complete(*ticket).map(|()| {
            let i = world
                .gpu
                .moves
                .iter()
                .position(|m| m.0 == *ticket)
                .expect("pending");
            let (_, moved) = world.gpu.moves.remove(i);
            world.gpu.run(&moved);
            for e in world.shadow.values_mut() {
                if e.pending == Some(*ticket) {
                    e.pending = None;
                }
            }
        }),
    };
    if result.is_err() {
        prop_assert!(*m == before, "the failed {:?} changed the manager", op);
    } else {
        world.stats.evicted_blocks += taken.saturating_sub(before.num_free_blocks()) as u64;
    }
    prop_assert_eq!(m.stats(), &world.stats, "after {:?}", op);
    match (result, expected) {
        (Ok(()), None) => {}
        (Err(e), Some(want)) => prop_assert_eq!(e, want),
        (Err(BlockError::OutOfBlocks { needed, available }), None) => {
            let evictable = before.num_free_blocks() + before.num_cached_blocks();
            prop_assert!(needed > available && available <= evictable);
        }
        (Err(BlockError::OutOfHostSlots { .. }), None) => {}
        (result, expected) => {
            prop_assert!(false, "{op:?}: got {result:?}, expected {expected:?}")
        }
    }
    Ok(())
}

/// After an operation: each sequence as the shadow says, its K/V (once no move is pending on
/// it) where its table or host slots say, refcounts equal to the table entries, every block
/// accounted for.
fn check_world(m: &BlockManager, world: &World, op: &Op) -> Result<(), TestCaseError> {
    let gpu = &world.gpu;
    let num_blocks = m.state.len();
    let mut owners = vec![0u32; num_blocks];
    for id in (0..IDS).map(SeqId) {
        let Some(e) = world.shadow.get(&id) else {
            prop_assert_eq!(m.residency(id), Err(BlockError::UnknownSequence(id)));
            continue;
        };
        prop_assert_eq!(m.residency(id), Ok(e.residency));
        prop_assert_eq!(m.num_tokens(id), Ok(e.len()));
        prop_assert_eq!(m.next_position(id), Ok(e.next_position));
        prop_assert_eq!(&m.head_tokens(id).unwrap(), &e.heads);
        let tokens = if e.heads_agree() {
            Ok(e.heads[0].clone())
        } else {
            Err(BlockError::HeadsDiffer(id))
        };
        prop_assert_eq!(m.tokens(id), tokens);
        prop_assert_eq!(m.is_compacted(id), Ok(e.compacted));
        prop_assert_eq!(m.pending_move(id), Ok(e.pending));
        if let Ok(table) = m.block_table(id) {
            prop_assert_eq!(table.len(), e.len().div_ceil(m.block_size()));
            for &b in table {
                owners[b as usize] += 1;
            }
        }
        let (memory, pages) = match &m.seqs[&id].place {
            Place::Device(table) => (&gpu.device, table),
            Place::Host(slots) => (&gpu.host, slots),
            Place::Dropped(_) => continue,
        };
        if e.pending.is_some() {
            continue;
        }
        for (h, want) in e.kv.iter().enumerate() {
            let kv: Vec<Option<Kv>> = (0..e.len())
                .map(|i| memory[gpu.slot(pages, i, h)])
                .collect();
            let want: Vec<Option<Kv>> = want.iter().copied().map(Some).collect();
            prop_assert_eq!(
                kv,
                want,
                "K/V of sequence {} kv head {} after {:?}",
                id,
                h,
                op
            );
        }
    }
    for (b, &n) in owners.iter().enumerate() {
        prop_assert_eq!(m.refcount(b as u32), n, "block {}", b);
    }
    let held = (0..num_blocks as u32)
        .filter(|&b| m.refcount(b) + m.pins(b) > 0)
        .count();
    prop_assert_eq!(
        m.num_free_blocks() + m.num_cached_blocks() + held,
        num_blocks
    );
    let pending: Vec<Ticket> = gpu.moves.iter().map(|m| m.0).collect();
    let mut listed: Vec<Ticket> = m.pending_moves().collect();
    listed.sort_unstable();
    let mut pending_sorted = pending.clone();
    pending_sorted.sort_unstable();
    prop_assert_eq!(listed, pending_sorted);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// After any sequence of operations, failed ones included, and any interleaving of move
    /// completions, the invariants hold, every refcount equals its owners, each sequence holds
    /// exactly the tokens per kv head the shadow model says, in ceil(tokens / block_size)
    /// blocks, with the next position and compaction mark the model says; the counters are the
    /// model's; and the K/V that the simulated GPU reads through each block table or host slot
    /// list is the K/V each token of each kv head was computed with, so that no block was shared,
    /// reused from the cache, swapped back or handed out while a pending copy still read it, when
    /// its K/V differs (a compacted one for a prompt's).
    #[test]
    fn any_operations_keep_the_invariants(
        num_blocks in 2usize..32,
        block_size in 1usize..5,
        num_host_blocks in 0usize..16,
        kv_heads in 1usize..4,
        sha256 in any::<bool>(),
        plans in vec((kind(), any::<Index>(), any::<Index>()), 1..80),
    ) {
        let hash = if sha256 { PrefixHash::Sha256 } else { PrefixHash::Fast };
        let mut m = BlockManager::with_options(Options {
            num_blocks,
            block_size,
            num_host_blocks,
            kv_heads,
            hash,
        });
        let page = kv_heads * block_size;
        let mut world = World {
            shadow: HashMap::new(),
            gpu: Gpu {
                block_size,
                kv_heads,
                device: vec![None; num_blocks * page],
                host: vec![None; num_host_blocks * page],
                next_fresh: 0,
                moves: Vec::new(),
            },
            stats: Stats::default(),
        };
        for plan in &plans {
            let op = resolve(&world, &m, plan);
            step(&mut m, &mut world, &op)?;
            if let Err(e) = m.check_invariants() {
                prop_assert!(false, "after {op:?}: {e}");
            }
            check_world(&m, &world, &op)?;
        }
    }
}
