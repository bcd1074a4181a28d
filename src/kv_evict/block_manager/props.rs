//! The property test: random operations against a shadow model and a simulated GPU.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use std::hash::{DefaultHasher, Hash, Hasher};

/// The sequence ids the property test uses: few, so that ids are reused and prefixes collide.
const IDS: u64 = 4;

/// An operation before its sequences are chosen: `target` and `other` pick them when it runs,
/// mostly among the sequences in the state it needs, so that most operations are valid.
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
    /// `(seed, density)`: keeps each token with probability `density / 4` (none at 0, all at
    /// 4); density 5 makes an invalid list.
    Compact(u64, u32),
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
    Compact(SeqId, Vec<usize>),
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
        2 => (any::<u64>(), 0..=5u32).prop_map(|(seed, density)| Kind::Compact(seed, density)),
    ]
}

/// What the K/V of a token was computed from. The model gives a token computed as part of a
/// prompt (or appended to one) a label that is a function of the token ids up to it, and a
/// token appended to a compacted sequence a label of its own: its K/V attends to the kept
/// tokens only. A kept token keeps its label.
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
    tokens: Vec<u32>,
    residency: Residency,
    /// Its tokens' K/V labels (empty while dropped).
    kv: Vec<Kv>,
    compacted: bool,
}

/// The independent model: each live sequence's tokens, residency and K/V.
type Shadow = HashMap<SeqId, Entry>;

/// The GPU side, simulated: the K/V label in each slot of each device block and host slot,
/// as the caller writes them (prompt tokens past the cached prefix, appended tokens) and moves
/// them (the manager's copy, swap and compaction plans).
struct Gpu {
    block_size: usize,
    device: Vec<Option<Kv>>,
    host: Vec<Option<Kv>>,
    next_fresh: u64,
}

impl Gpu {
    fn slot(&self, table: &[u32], i: usize) -> usize {
        table[i / self.block_size] as usize * self.block_size + i % self.block_size
    }

    fn write(&mut self, table: &[u32], kv: &[Kv], from: usize) {
        for (i, &kv) in kv.iter().enumerate().skip(from) {
            let slot = self.slot(table, i);
            self.device[slot] = Some(kv);
        }
    }

    fn copy(src: &[Option<Kv>], s: u32, dst: &mut [Option<Kv>], d: u32, bs: usize) {
        let (s, d) = (s as usize * bs, d as usize * bs);
        dst[d..d + bs].copy_from_slice(&src[s..s + bs]);
    }
}

/// One of the ids whose state `fits`, or one time in 4n+1 (always, if none fits) any id.
fn pick(shadow: &Shadow, index: &Index, fits: impl Fn(Option<Residency>) -> bool) -> SeqId {
    let ids: Vec<SeqId> = (0..IDS)
        .map(SeqId)
        .filter(|id| fits(shadow.get(id).map(|e| e.residency)))
        .collect();
    let any = SeqId(index.index(IDS as usize) as u64);
    ids.get(index.index(4 * ids.len() + 1) / 4)
        .copied()
        .unwrap_or(any)
}

/// The positions of `0..n` that a compaction of `(seed, density)` keeps.
fn kept_positions(n: usize, seed: u64, density: u32) -> Vec<usize> {
    let keep = |p: usize| {
        let mut hasher = DefaultHasher::new();
        (seed, p).hash(&mut hasher);
        hasher.finish() % 4 < u64::from(density.min(4))
    };
    let mut kept: Vec<usize> = (0..n).filter(|&p| keep(p)).collect();
    if density > 4 {
        // Invalid: a position past the end, or a repeated one.
        match kept.len() {
            len if len == 0 || seed % 2 == 0 => kept.push(n + (seed % 3) as usize),
            len => {
                let i = (seed as usize / 2) % len;
                kept.insert(i, kept[i]);
            }
        }
    }
    kept
}

fn resolve(shadow: &Shadow, (kind, a, b): &(Kind, Index, Index)) -> Op {
    let on = |want| move |r| r == Some(want);
    let absent = |r: Option<Residency>| r.is_none();
    let device = |index| pick(shadow, index, on(Residency::Device));
    match kind {
        Kind::Add(prompt) => Op::Add(pick(shadow, a, absent), prompt.clone()),
        Kind::Append(token) => Op::Append(device(a), *token),
        Kind::Fork => Op::Fork(device(a), pick(shadow, b, absent)),
        Kind::Free => Op::Free(pick(shadow, a, |r| r.is_some())),
        Kind::SwapOut => Op::SwapOut(device(a)),
        Kind::SwapIn => Op::SwapIn(pick(shadow, a, on(Residency::Host))),
        Kind::Drop => Op::Drop(device(a)),
        Kind::Resume => Op::Resume(pick(shadow, a, on(Residency::Dropped))),
        Kind::Compact(seed, density) => {
            let id = device(a);
            let n = shadow.get(&id).map_or(0, |e| e.tokens.len());
            Op::Compact(id, kept_positions(n, *seed, *density))
        }
    }
}

/// The error the shadow model predicts from sequence states alone (not from capacity).
fn expected_error(shadow: &Shadow, op: &Op) -> Option<BlockError> {
    let residency = |id: SeqId| shadow.get(&id).map(|e| e.residency);
    let need = |id, want, err: fn(SeqId, Residency) -> BlockError| match residency(id) {
        None => Some(BlockError::UnknownSequence(id)),
        Some(r) if r != want => Some(err(id, r)),
        Some(_) => None,
    };
    let exists = |id| residency(id).map(|_| BlockError::SequenceExists(id));
    match *op {
        Op::Add(id, _) => exists(id),
        Op::Append(id, _) | Op::SwapOut(id) | Op::Drop(id) => {
            need(id, Residency::Device, BlockError::NotOnDevice)
        }
        Op::Fork(parent, child) => {
            need(parent, Residency::Device, BlockError::NotOnDevice).or_else(|| exists(child))
        }
        Op::Free(id) => residency(id)
            .is_none()
            .then_some(BlockError::UnknownSequence(id)),
        Op::SwapIn(id) => need(id, Residency::Host, BlockError::NotSwapped),
        Op::Resume(id) => need(id, Residency::Dropped, BlockError::NotDropped),
        Op::Compact(id, ref kept) => {
            need(id, Residency::Device, BlockError::NotOnDevice).or_else(|| {
                let num_tokens = shadow[&id].tokens.len();
                let bad = |i: usize| kept[i] >= num_tokens || (i > 0 && kept[i] <= kept[i - 1]);
                let index = (0..kept.len()).find(|&i| bad(i))?;
                Some(BlockError::InvalidKept {
                    id,
                    index,
                    position: kept[index],
                    num_tokens,
                })
            })
        }
    }
}

/// Runs one operation on the manager, the shadow and the simulated GPU, which runs the plans
/// the operation returns; checks what the shadow can predict: the state errors, when capacity
/// errors must (and must not) happen, that failures change nothing.
fn step(
    m: &mut BlockManager,
    shadow: &mut Shadow,
    gpu: &mut Gpu,
    op: &Op,
) -> Result<(), TestCaseError> {
    let before = m.clone();
    let bs = m.block_size();
    let expected = expected_error(shadow, op);
    let set = |shadow: &mut Shadow, id, r| shadow.get_mut(&id).expect("live").residency = r;
    let result = match op {
        Op::Add(id, prompt) => m.add_sequence(*id, prompt).map(|a| {
            assert!(a.num_cached_tokens % bs == 0 && a.num_cached_tokens <= prompt.len());
            let kv = prompt_kvs(prompt);
            gpu.write(m.block_table(*id).unwrap(), &kv, a.num_cached_tokens);
            let (tokens, residency) = (prompt.clone(), Residency::Device);
            let compacted = false;
            shadow.insert(
                *id,
                Entry {
                    tokens,
                    residency,
                    kv,
                    compacted,
                },
            );
        }),
        Op::Append(id, token) => {
            // Needs a block iff the last block is full, or partial and shared.
            let needs_block = expected.is_none() && {
                let partial = shadow[id].tokens.len() % bs != 0;
                !partial || m.refcount(*m.block_table(*id).unwrap().last().unwrap()) > 1
            };
            let result = m.append_token(*id, *token);
            if needs_block {
                prop_assert_eq!(result.is_ok(), before.can_allocate(1));
            }
            result.map(|out| {
                let e = shadow.get_mut(id).expect("live");
                assert_eq!(out.offset, e.tokens.len() % bs);
                if let Some(CopyBlock { src, dst }) = out.copy {
                    let device = gpu.device.clone();
                    Gpu::copy(&device, src, &mut gpu.device, dst, bs);
                }
                let kv = if e.compacted {
                    gpu.next_fresh += 1;
                    Kv::Fresh(gpu.next_fresh)
                } else {
                    prompt_kv(e.kv.last().copied(), *token)
                };
                gpu.device[out.block as usize * bs + out.offset] = Some(kv);
                e.tokens.push(*token);
                e.kv.push(kv);
            })
        }
        Op::Fork(parent, child) => m.fork(*parent, *child).map(|()| {
            let entry = shadow[parent].clone();
            shadow.insert(*child, entry);
        }),
        Op::Free(id) => m.free_sequence(*id).map(|()| {
            shadow.remove(id);
        }),
        Op::SwapOut(id) => {
            let result = m.swap_out(*id);
            if expected.is_none() {
                let blocks = shadow[id].tokens.len().div_ceil(bs);
                prop_assert_eq!(result.is_ok(), blocks <= before.num_free_host_slots());
            }
            result.map(|plan| {
                for (block, slot) in plan.pairs {
                    Gpu::copy(&gpu.device, block, &mut gpu.host, slot, bs);
                }
                set(shadow, *id, Residency::Host);
            })
        }
        Op::SwapIn(id) => m.swap_in(*id).map(|plan| {
            for (slot, block) in plan.pairs {
                Gpu::copy(&gpu.host, slot, &mut gpu.device, block, bs);
            }
            set(shadow, *id, Residency::Device);
        }),
        Op::Drop(id) => m.drop_for_recompute(*id).map(|()| {
            let e = shadow.get_mut(id).expect("live");
            (e.residency, e.kv, e.compacted) = (Residency::Dropped, Vec::new(), false);
        }),
        Op::Resume(id) => m.resume(*id).map(|a| {
            let e = shadow.get_mut(id).expect("live");
            assert_eq!(a.num_tokens, e.tokens.len());
            e.kv = prompt_kvs(&e.tokens);
            gpu.write(m.block_table(*id).unwrap(), &e.kv, a.num_cached_tokens);
            e.residency = Residency::Device;
        }),
        Op::Compact(id, kept) => {
            let result = m.compact(*id, kept);
            if expected.is_none() {
                let blocks = kept.len().div_ceil(bs);
                prop_assert_eq!(result.is_ok(), before.can_allocate(blocks));
            }
            match result {
                Ok(plan) => {
                    prop_assert_eq!(&plan.old_table, before.block_table(*id).unwrap());
                    prop_assert_eq!(&plan.new_table, m.block_table(*id).unwrap());
                    prop_assert_eq!(&plan.kept, kept);
                    prop_assert!(plan.new_table.iter().all(|b| !plan.old_table.contains(b)));
                    // The gather, from a snapshot: the tables are disjoint, so order is free.
                    let old = gpu.device.clone();
                    for (j, &p) in kept.iter().enumerate() {
                        let dst = gpu.slot(&plan.new_table, j);
                        gpu.device[dst] = old[gpu.slot(&plan.old_table, p)];
                    }
                    let e = shadow.get_mut(id).expect("live");
                    e.tokens = kept.iter().map(|&p| e.tokens[p]).collect();
                    e.kv = kept.iter().map(|&p| e.kv[p]).collect();
                    e.compacted = true;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
    };
    if result.is_err() {
        prop_assert!(*m == before, "the failed {:?} changed the manager", op);
    }
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// After any sequence of operations, failed ones included, the invariants hold, every
    /// refcount equals its owners, each sequence holds exactly the tokens the shadow model
    /// says, in ceil(tokens / block_size) blocks, and is compacted when the model says; and
    /// the K/V that the simulated GPU reads through each block table or host slot list is the
    /// K/V each token of the sequence was computed with, so that no block was shared, reused
    /// from the cache or swapped back when its K/V differs (a compacted one for a prompt's).
    #[test]
    fn any_operations_keep_the_invariants(
        num_blocks in 2usize..32,
        block_size in 1usize..5,
        num_host_blocks in 0usize..16,
        plans in vec((kind(), any::<Index>(), any::<Index>()), 1..80),
    ) {
        let mut m = BlockManager::new(num_blocks, block_size, num_host_blocks);
        let mut shadow = Shadow::new();
        let mut gpu = Gpu {
            block_size,
            device: vec![None; num_blocks * block_size],
            host: vec![None; num_host_blocks * block_size],
            next_fresh: 0,
        };
        for plan in &plans {
            let op = resolve(&shadow, plan);
            step(&mut m, &mut shadow, &mut gpu, &op)?;
            if let Err(e) = m.check_invariants() {
                prop_assert!(false, "after {op:?}: {e}");
            }
            let mut owners = vec![0u32; num_blocks];
            for id in (0..IDS).map(SeqId) {
                let Some(e) = shadow.get(&id) else {
                    prop_assert_eq!(m.residency(id), Err(BlockError::UnknownSequence(id)));
                    continue;
                };
                prop_assert_eq!(m.residency(id), Ok(e.residency));
                prop_assert_eq!(m.num_tokens(id), Ok(e.tokens.len()));
                prop_assert_eq!(&m.tokens(id).unwrap(), &e.tokens);
                prop_assert_eq!(m.is_compacted(id), Ok(e.compacted));
                let (memory, pages) = match &m.seqs[&id].place {
                    Place::Device(table) => (&gpu.device, table),
                    Place::Host(slots) => (&gpu.host, slots),
                    Place::Dropped(_) => continue,
                };
                let kv: Vec<Option<Kv>> =
                    (0..e.tokens.len()).map(|i| memory[gpu.slot(pages, i)]).collect();
                let want: Vec<Option<Kv>> = e.kv.iter().copied().map(Some).collect();
                prop_assert_eq!(kv, want, "K/V of sequence {} after {:?}", id, op);
                if let Ok(table) = m.block_table(id) {
                    prop_assert_eq!(table.len(), e.tokens.len().div_ceil(block_size));
                    for &b in table {
                        owners[b as usize] += 1;
                    }
                }
            }
            for (b, &n) in owners.iter().enumerate() {
                prop_assert_eq!(m.refcount(b as u32), n, "block {}", b);
            }
            let held = owners.iter().filter(|&&n| n > 0).count();
            prop_assert_eq!(m.num_free_blocks() + m.num_cached_blocks() + held, num_blocks);
        }
    }
}
