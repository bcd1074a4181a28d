//! CPU block manager of a paged KV cache, the way vLLM's block manager works: which device block
//! holds which tokens of which sequence, shared prefixes, copy-on-write, prefix caching, LRU
//! eviction, preemption and token-level compaction. It is a pure data structure: operations return
//! plans ([`CopyBlock`], [`SwapPlan`], [`CompactPlan`]) that the GPU side executes as batched
//! copies.
//!
//! # States of a block
//!
//! The device cache is `num_blocks` blocks of `block_size` tokens. Every block is in exactly one
//! state:
//! - **free**: on the free list; its content is of no use to anyone;
//! - **cached**: refcount 0, full and registered under its prefix hash, so that a later prompt
//!   with the same prefix takes it back instead of recomputing it; kept in LRU order;
//! - **held**: refcount = the number of block-table entries, over all sequences on the device,
//!   that point at it.
//!
//! The manager mirrors each block's token ids (not its K/V, a few bytes per token). Prefix hashes
//! are computed from them when a block fills, a dropped sequence is resumed from them, and they let
//! [`BlockManager::check_invariants`] and the tests prove that no operation changes the tokens that
//! another sequence sees.
//!
//! # Why prefix hashes are chained
//!
//! A full block's hash is `H(hash of the previous block, the block's token ids)`. The K/V of a
//! token depends on every token before it, so a block can be reused only when the whole prefix up
//! to it matches, not just its own tokens; chaining makes equal hashes mean equal prefixes at the
//! cost of one lookup per block. Hashes are 64-bit (std's `DefaultHasher`) and live only in this
//! process; a collision becomes likely only around 2^32 distinct blocks. Partial blocks are never
//! hashed, their content still changes; nor are the blocks of a compacted sequence (see
//! *Compaction*). A prompt lookup stops at the first miss: the caller computes every token after
//! the cached prefix anyway. When a block fills with a hash that another block already has (two
//! sequences generated the same tokens), the registered block stays registered and the newcomer
//! keeps its hash only to chain the next one; it is cached on release only if the hash is then
//! unregistered, and goes to the free list otherwise.
//!
//! # Copy-on-write
//!
//! Full blocks are never written again, so sharing them costs nothing. Only a sequence's partial
//! last block is written: when a sequence appends to a partial block that other sequences also
//! hold (after [`BlockManager::fork`]), it gets a fresh block, the caller copies the old one into
//! it on the GPU ([`CopyBlock`]), and the new token goes there; the other holders keep the
//! original. A partial block held by one sequence only is written in place.
//!
//! # LRU eviction
//!
//! Allocation takes a free block first, since free blocks hold nothing of value, and only then
//! evicts the cached block released longest ago (dropping its hash). A sequence's blocks are
//! released last block first, so its tail is evicted before its head: a block is useless without
//! the blocks before it (lookups stop at the first miss), and the head is the part that future
//! prompts share. The LRU is a `BTreeMap` from release tick to block: insert, remove and pop-oldest
//! are O(log n), and every other structure is a `Vec` or `HashMap`, so an operation costs
//! O(log n) per block it touches (200k operations take about half a second in a debug build).
//!
//! # Preemption
//!
//! - **Swap**: [`BlockManager::swap_out`] copies *every* block of the sequence to a host slot,
//!   including blocks shared with other sequences; those stay on the device for their other owners
//!   and only this sequence's references are dropped. Refusing to swap a sharing sequence would
//!   leave a forked beam unswappable while its siblings run; the cost is that a shared prefix may
//!   have several host copies. [`BlockManager::swap_in`] takes back any full block whose hash is
//!   still on the device (held or cached) without copying it, and copies the rest.
//! - **Recompute**: [`BlockManager::drop_for_recompute`] releases the blocks and keeps the token
//!   ids; [`BlockManager::resume`] allocates again like [`BlockManager::add_sequence`], and prefix
//!   hits (often the sequence's own blocks, still cached) shorten the recompute.
//!
//! # Compaction
//!
//! A token-level eviction policy keeps `k` of a sequence's tokens. [`BlockManager::compact`]
//! allocates `ceil(k / block_size)` fresh blocks, mirrors the kept tokens into them, points the
//! block table at them and releases the old blocks; the [`CompactPlan`] it returns is the gather
//! the GPU runs. The fresh blocks are taken while the old ones are still held, since the gather
//! reads the old blocks while it writes the new ones: compaction needs `ceil(k / block_size)` free
//! or evictable blocks on top of the sequence's own, although it ends up holding fewer. The old
//! blocks are then released like a freed sequence's: those that others share (a fork, another
//! prompt through the prefix cache) stay theirs, and full ones stay cached under their prefix
//! hash, since their K/V is still that of a prompt.
//!
//! A compacted sequence is no longer the prompt made of its token ids: each kept token's K/V was
//! computed with the full context at its original position, and a token appended later attends
//! to the kept tokens only. None of its blocks may ever be taken for a prompt's block, so
//! compaction marks the sequence and its blocks **unhashed**, for good: the fresh blocks, the
//! blocks it fills later by appending (a hash chained from nothing would equal a real prompt's
//! first block), its forks and their copies on write, and its host slots through a swap. An
//! unhashed block is never hashed when it fills, never registered, never cached (released, it
//! goes to the free list), and swap-in, having no hash to look up, copies it back. The mark is on
//! the sequence, since a sequence compacted to 0 tokens has no block to carry it, and on each
//! page, so that copies (copy-on-write, swap) carry it and [`BlockManager::check_invariants`] can
//! prove that no block is shared between a compacted and an uncompacted sequence.
//!
//! The alternative, chaining the compacted blocks' hashes from a per-sequence unique salt, would
//! keep them hashable; we chose the mark because an unhashed block cannot match a prompt at all,
//! where a salted hash only makes a match as unlikely as any 64-bit collision, and because salted
//! blocks would fill the cache with entries no prompt can ever hit. All a salt would win back is
//! reuse within the sequence's own lineage (swap-in finding its blocks still on the device, forked
//! beams that fill a block with the same tokens), which saves a copy, never a recompute.
//!
//! [`BlockManager::drop_for_recompute`] ends the mark: it keeps token ids only, and
//! [`BlockManager::resume`] has the caller compute them as a new prompt (positions from 0, each
//! token attending to the kept tokens before it), so their K/V is again a function of the token
//! ids: the blocks are hashed, and found in the cache, like any prompt's. That is resume's
//! contract; a server that recomputed the kept tokens at their original positions would get K/V
//! that no prefix hash describes, and must not resume a compacted sequence.
//!
//! Every operation validates its arguments and checks capacity before it changes anything, so a
//! failed operation leaves the manager exactly as it was.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::ops::Range;

use thiserror::Error;

/// Identifies a sequence (a request, or one beam of it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeqId(pub u64);

impl fmt::Display for SeqId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Where a sequence's tokens are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residency {
    /// In device blocks: the sequence can run.
    Device,
    /// In host slots after [`BlockManager::swap_out`].
    Host,
    /// Only its token ids, after [`BlockManager::drop_for_recompute`].
    Dropped,
}

impl fmt::Display for Residency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Residency::Device => "on the device",
            Residency::Host => "swapped out to host memory",
            Residency::Dropped => "dropped for recompute",
        })
    }
}

/// Why an operation was refused; the manager is then exactly as it was before the call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BlockError {
    #[error("out of device blocks: {needed} needed, {available} free or evictable")]
    OutOfBlocks { needed: usize, available: usize },
    #[error("out of host slots: {needed} needed, {available} free")]
    OutOfHostSlots { needed: usize, available: usize },
    #[error("unknown sequence {0}")]
    UnknownSequence(SeqId),
    #[error("sequence {0} already exists")]
    SequenceExists(SeqId),
    #[error("sequence {0} is not on the device: it is {1}")]
    NotOnDevice(SeqId, Residency),
    #[error("sequence {0} is not swapped out: it is {1}")]
    NotSwapped(SeqId, Residency),
    #[error("sequence {0} was not dropped for recompute: it is {1}")]
    NotDropped(SeqId, Residency),
    /// `kept[index]` is not above `kept[index - 1]`, or not below the sequence's token count.
    #[error(
        "kept positions of sequence {id} must be strictly increasing and below its {num_tokens} \
         tokens: kept[{index}] = {position} is not"
    )]
    InvalidKept {
        id: SeqId,
        index: usize,
        position: usize,
        num_tokens: usize,
    },
}

/// A device-to-device block copy the caller must run before writing the new token (copy-on-write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyBlock {
    pub src: u32,
    pub dst: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapDirection {
    DeviceToHost,
    HostToDevice,
}

/// Block copies between device and pinned host memory, to run as one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapPlan {
    pub direction: SwapDirection,
    /// `(src, dst)`: `(device block, host slot)` for [`SwapDirection::DeviceToHost`],
    /// `(host slot, device block)` for [`SwapDirection::HostToDevice`].
    pub pairs: Vec<(u32, u32)>,
}

/// What [`BlockManager::add_sequence`] or [`BlockManager::resume`] found in the prefix cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocation {
    pub num_tokens: usize,
    /// Leading tokens whose K/V is already in reused blocks (a multiple of the block size).
    pub num_cached_tokens: usize,
}

impl Allocation {
    /// The tokens the caller must run through the model to fill the sequence's K/V.
    pub fn num_tokens_to_compute(&self) -> usize {
        self.num_tokens - self.num_cached_tokens
    }
}

/// Where [`BlockManager::append_token`] put the token: the caller writes its K/V at
/// `block * block_size + offset`, after running `copy` if there is one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub block: u32,
    pub offset: usize,
    pub copy: Option<CopyBlock>,
}

/// The gather that [`BlockManager::compact`] leaves to the GPU: token `j` of the compacted
/// sequence, at slot `j % block_size` of `new_table[j / block_size]`, gets the K/V of old token
/// `kept[j]`, at slot `kept[j] % block_size` of `old_table[kept[j] / block_size]`.
///
/// The two tables share no block, so the gather can run in any order. The manager has already
/// released the old blocks when it returns the plan, so the caller runs the gather before the K/V
/// writes of any later operation, as it does a [`SwapPlan`] to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactPlan {
    /// The block table before compaction.
    pub old_table: Vec<u32>,
    /// The block table after compaction: `ceil(kept.len() / block_size)` fresh blocks.
    pub new_table: Vec<u32>,
    /// The old positions of the kept tokens, strictly increasing.
    pub kept: Vec<usize>,
}

/// The hash of a full block: chained through the previous block's hash so it names the prefix.
fn chain_hash(parent: Option<u64>, tokens: &[u32]) -> u64 {
    let mut hasher = DefaultHasher::new();
    parent.hash(&mut hasher);
    tokens.hash(&mut hasher);
    hasher.finish()
}

/// What a page's hash chains from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chain {
    /// The hash of the previous block of the sequence (`None` for the first block): the page is
    /// hashed when it fills.
    After(Option<u64>),
    /// The page belongs to a compacted sequence: never hashed (see the module header).
    Compacted,
}

impl Chain {
    /// The chain of the block after one with this chain and hash.
    fn next(self, hash: Option<u64>) -> Chain {
        match self {
            Chain::After(_) => Chain::After(hash),
            Chain::Compacted => Chain::Compacted,
        }
    }

    /// The first block's chain in a sequence compacted or not.
    fn first(compacted: bool) -> Chain {
        if compacted {
            Chain::Compacted
        } else {
            Chain::After(None)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageMeta {
    len: usize,
    /// Set once the page is full, unless its chain is [`Chain::Compacted`].
    hash: Option<u64>,
    chain: Chain,
}

impl Default for PageMeta {
    fn default() -> Self {
        PageMeta {
            len: 0,
            hash: None,
            chain: Chain::After(None),
        }
    }
}

impl PageMeta {
    /// The hash a page with this chain and these (full) tokens gets.
    fn hash_of(chain: Chain, tokens: &[u32]) -> Option<u64> {
        match chain {
            Chain::After(parent) => Some(chain_hash(parent, tokens)),
            Chain::Compacted => None,
        }
    }
}

/// Token ids mirrored for a pool of pages (device blocks or host slots).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pages {
    block_size: usize,
    tokens: Vec<u32>,
    meta: Vec<PageMeta>,
}

impl Pages {
    fn new(count: usize, block_size: usize) -> Self {
        assert!(
            u32::try_from(count).is_ok(),
            "{count} pages do not fit u32 ids"
        );
        Pages {
            block_size,
            tokens: vec![0; count * block_size],
            meta: vec![PageMeta::default(); count],
        }
    }

    fn count(&self) -> usize {
        self.meta.len()
    }

    fn meta(&self, page: u32) -> PageMeta {
        self.meta[page as usize]
    }

    /// Where the page's tokens are in `tokens`.
    fn range(&self, page: u32) -> Range<usize> {
        let start = page as usize * self.block_size;
        start..start + self.block_size
    }

    fn tokens(&self, page: u32) -> &[u32] {
        &self.tokens[self.range(page)][..self.meta(page).len]
    }

    /// Sets the page's content; hashes it if it is full and its chain allows.
    fn fill(&mut self, page: u32, tokens: &[u32], chain: Chain) {
        let range = self.range(page);
        self.tokens[range][..tokens.len()].copy_from_slice(tokens);
        let full = tokens.len() == self.block_size;
        self.meta[page as usize] = PageMeta {
            len: tokens.len(),
            hash: full.then(|| PageMeta::hash_of(chain, tokens)).flatten(),
            chain,
        };
    }

    /// Appends a token to a partial page; hashes the page if that fills it and its chain allows.
    fn push(&mut self, page: u32, token: u32) {
        let PageMeta { len, chain, .. } = self.meta(page);
        let start = self.range(page).start;
        self.tokens[start + len] = token;
        self.meta[page as usize].len = len + 1;
        if len + 1 == self.block_size {
            self.meta[page as usize].hash = PageMeta::hash_of(chain, self.tokens(page));
        }
    }

    fn copy_within(&mut self, src: u32, dst: u32) {
        let (src_range, dst_start) = (self.range(src), self.range(dst).start);
        self.tokens.copy_within(src_range, dst_start);
        self.meta[dst as usize] = self.meta[src as usize];
    }

    fn copy_from(&mut self, dst: u32, other: &Pages, src: u32) {
        let range = self.range(dst);
        self.tokens[range].copy_from_slice(&other.tokens[other.range(src)]);
        self.meta[dst as usize] = other.meta[src as usize];
    }

    /// The tokens of a sequence stored in `pages`, in order.
    fn gather(&self, pages: &[u32]) -> Vec<u32> {
        pages
            .iter()
            .flat_map(|&p| self.tokens(p))
            .copied()
            .collect()
    }

    /// A sequence's pages must be full but the last and hold `num_tokens`; chained by hash, or
    /// all unhashed if the sequence is compacted.
    fn check_sequence(
        &self,
        pages: &[u32],
        num_tokens: usize,
        compacted: bool,
    ) -> Result<(), String> {
        let bs = self.block_size;
        if pages.len() != num_tokens.div_ceil(bs) {
            return Err(format!("{} pages for {num_tokens} tokens", pages.len()));
        }
        let mut chain = Chain::first(compacted);
        for (i, &page) in pages.iter().enumerate() {
            if page as usize >= self.count() {
                return Err(format!("page {page} out of range"));
            }
            let meta = self.meta(page);
            let want = bs.min(num_tokens - i * bs);
            let hashed = want == bs && !compacted;
            if meta.len != want || meta.chain != chain || meta.hash.is_some() != hashed {
                return Err(format!(
                    "page {page} (entry {i}): {meta:?}, want {want} tokens, chain {chain:?}, \
                     hashed {hashed}"
                ));
            }
            chain = chain.next(meta.hash);
        }
        Ok(())
    }

    /// A page's hash, if any, must be that of its chain and its full content: an unhashed
    /// (compacted) page has none.
    fn check_hash(&self, page: u32) -> Result<(), String> {
        let meta = self.meta(page);
        match meta.hash {
            Some(h)
                if meta.len != self.block_size
                    || PageMeta::hash_of(meta.chain, self.tokens(page)) != Some(h) =>
            {
                Err(format!(
                    "page {page}: hash {h:#x} does not match its content and chain {meta:?}"
                ))
            }
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockState {
    Free,
    Cached { tick: u64 },
    Held { refs: u32 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// Block table: device block ids in token order.
    Device(Vec<u32>),
    /// Host slot ids in token order.
    Host(Vec<u32>),
    /// Token ids to recompute from.
    Dropped(Vec<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sequence {
    num_tokens: usize,
    place: Place,
    /// Compacted since it was added or last resumed: its blocks are unhashed. Never set while
    /// dropped.
    compacted: bool,
}

impl Sequence {
    fn residency(&self) -> Residency {
        match self.place {
            Place::Device(_) => Residency::Device,
            Place::Host(_) => Residency::Host,
            Place::Dropped(_) => Residency::Dropped,
        }
    }
}

/// The block manager. Two managers compare equal when every block, host slot and sequence is in
/// the same state, which is how tests show that a failed operation changed nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockManager {
    device: Pages,
    state: Vec<BlockState>,
    /// Stack: the most recently freed block is reused first.
    free: Vec<u32>,
    /// Cached blocks by release tick, oldest first.
    lru: BTreeMap<u64, u32>,
    next_tick: u64,
    /// Chained prefix hash -> the held or cached block registered under it.
    by_hash: HashMap<u64, u32>,
    host: Pages,
    host_free: Vec<u32>,
    seqs: HashMap<SeqId, Sequence>,
}

impl BlockManager {
    /// A manager of `num_blocks` device blocks and `num_host_blocks` host slots of `block_size`
    /// tokens each. Panics if `block_size` is 0 or a pool has more than `u32::MAX` pages.
    pub fn new(num_blocks: usize, block_size: usize, num_host_blocks: usize) -> Self {
        assert!(block_size > 0, "block_size must be positive");
        // Reversed so that blocks are handed out in increasing order from a fresh manager.
        let ids = |n: usize| (0..n as u32).rev().collect::<Vec<_>>();
        BlockManager {
            device: Pages::new(num_blocks, block_size),
            state: vec![BlockState::Free; num_blocks],
            free: ids(num_blocks),
            lru: BTreeMap::new(),
            next_tick: 0,
            by_hash: HashMap::new(),
            host: Pages::new(num_host_blocks, block_size),
            host_free: ids(num_host_blocks),
            seqs: HashMap::new(),
        }
    }

    pub fn block_size(&self) -> usize {
        self.device.block_size
    }

    /// Allocates blocks for a prompt, reusing the blocks of its longest cached prefix of full
    /// blocks. All of it may be cached; a caller that needs the logits of the last token runs it
    /// again, which rewrites the same K/V values into the shared block.
    pub fn add_sequence(&mut self, id: SeqId, tokens: &[u32]) -> Result<Allocation, BlockError> {
        if self.seqs.contains_key(&id) {
            return Err(BlockError::SequenceExists(id));
        }
        let (table, num_cached_tokens) = self.allocate_prompt(tokens)?;
        self.seqs.insert(
            id,
            Sequence {
                num_tokens: tokens.len(),
                place: Place::Device(table),
                compacted: false,
            },
        );
        Ok(Allocation {
            num_tokens: tokens.len(),
            num_cached_tokens,
        })
    }

    /// Reserves the slot of one more token of a sequence on the device, copying its last block
    /// first if that block is partial and shared. A block that this fills is registered for
    /// prefix caching, unless the sequence is compacted.
    pub fn append_token(&mut self, id: SeqId, token: u32) -> Result<AppendOutcome, BlockError> {
        let (table, num_tokens) = self.device_table(id)?;
        let compacted = self.seqs[&id].compacted;
        let last = table.last().copied();
        let offset = num_tokens % self.block_size();
        let (block, copy) = match last {
            Some(last) if offset != 0 && self.refcount(last) > 1 => {
                self.ensure_blocks(1, 0)?;
                let dst = self.take_block();
                self.device.copy_within(last, dst);
                self.release(last);
                (dst, Some(CopyBlock { src: last, dst }))
            }
            Some(last) if offset != 0 => (last, None),
            _ => {
                self.ensure_blocks(1, 0)?;
                let block = self.take_block();
                let chain = match last {
                    Some(b) => self.device.meta(b).chain.next(self.device.meta(b).hash),
                    None => Chain::first(compacted),
                };
                self.device.fill(block, &[], chain);
                (block, None)
            }
        };
        self.device.push(block, token);
        self.register(block);
        let seq = self.seqs.get_mut(&id).expect("checked above");
        seq.num_tokens += 1;
        let Place::Device(table) = &mut seq.place else {
            unreachable!("checked above")
        };
        if offset == 0 {
            table.push(block);
        } else {
            *table.last_mut().expect("a partial block") = block;
        }
        Ok(AppendOutcome {
            block,
            offset,
            copy,
        })
    }

    /// Makes `child` share every block of `parent`, which must be on the device (beam search,
    /// parallel sampling). No copy: the first append to a shared partial block copies it.
    pub fn fork(&mut self, parent: SeqId, child: SeqId) -> Result<(), BlockError> {
        let (table, num_tokens) = self.device_table(parent)?;
        if self.seqs.contains_key(&child) {
            return Err(BlockError::SequenceExists(child));
        }
        let table = table.to_vec();
        for &block in &table {
            self.acquire(block);
        }
        let compacted = self.seqs[&parent].compacted;
        self.seqs.insert(
            child,
            Sequence {
                num_tokens,
                place: Place::Device(table),
                compacted,
            },
        );
        Ok(())
    }

    /// Forgets a sequence wherever it is, releasing its blocks or host slots.
    pub fn free_sequence(&mut self, id: SeqId) -> Result<(), BlockError> {
        let seq = self
            .seqs
            .remove(&id)
            .ok_or(BlockError::UnknownSequence(id))?;
        match seq.place {
            Place::Device(table) => self.release_all(&table),
            Place::Host(slots) => self.host_free.extend(slots),
            Place::Dropped(_) => {}
        }
        Ok(())
    }

    /// Moves a sequence's blocks to host slots. Blocks shared with other sequences are copied too
    /// and stay on the device for their other owners.
    pub fn swap_out(&mut self, id: SeqId) -> Result<SwapPlan, BlockError> {
        let table = self.device_table(id)?.0.to_vec();
        if table.len() > self.host_free.len() {
            let (needed, available) = (table.len(), self.host_free.len());
            return Err(BlockError::OutOfHostSlots { needed, available });
        }
        let pairs: Vec<(u32, u32)> = table
            .iter()
            .map(|&block| {
                let slot = self.host_free.pop().expect("checked above");
                self.host.copy_from(slot, &self.device, block);
                (block, slot)
            })
            .collect();
        self.release_all(&table);
        self.set_place(id, Place::Host(pairs.iter().map(|p| p.1).collect()));
        let direction = SwapDirection::DeviceToHost;
        Ok(SwapPlan { direction, pairs })
    }

    /// Brings a swapped-out sequence back to the device. Full blocks whose hash is still on the
    /// device are shared without a copy; the plan lists the others (all of a compacted
    /// sequence's, which are unhashed).
    pub fn swap_in(&mut self, id: SeqId) -> Result<SwapPlan, BlockError> {
        let seq = self.seq(id)?;
        let Place::Host(slots) = &seq.place else {
            return Err(BlockError::NotSwapped(id, seq.residency()));
        };
        let slots = slots.clone();
        let hits: Vec<Option<u32>> = slots
            .iter()
            .map(|&slot| {
                self.host
                    .meta(slot)
                    .hash
                    .and_then(|h| self.by_hash.get(&h).copied())
            })
            .collect();
        let misses = hits.iter().filter(|hit| hit.is_none()).count();
        let lru_hits = hits
            .iter()
            .flatten()
            .filter(|&&b| self.refcount(b) == 0)
            .count();
        self.ensure_blocks(misses, lru_hits)?;
        // Hits first: allocating the misses must not evict a block this sequence is about to share.
        for &block in hits.iter().flatten() {
            self.acquire(block);
        }
        let mut pairs = Vec::with_capacity(misses);
        let table = (slots.iter().zip(hits))
            .map(|(&slot, hit)| {
                hit.unwrap_or_else(|| {
                    let block = self.take_block();
                    self.device.copy_from(block, &self.host, slot);
                    self.register(block);
                    pairs.push((slot, block));
                    block
                })
            })
            .collect();
        self.host_free.extend(&slots);
        self.set_place(id, Place::Device(table));
        let direction = SwapDirection::HostToDevice;
        Ok(SwapPlan { direction, pairs })
    }

    /// Releases a sequence's blocks and keeps its token ids, for [`BlockManager::resume`]. A
    /// compacted sequence is no longer compacted: its kept tokens are a prompt to recompute.
    pub fn drop_for_recompute(&mut self, id: SeqId) -> Result<(), BlockError> {
        let (table, _) = self.device_table(id)?;
        let table = table.to_vec();
        let tokens = self.device.gather(&table);
        self.release_all(&table);
        self.set_place(id, Place::Dropped(tokens));
        self.seqs.get_mut(&id).expect("checked above").compacted = false;
        Ok(())
    }

    /// Allocates blocks again for a dropped sequence like [`BlockManager::add_sequence`] does for
    /// its token ids; the result says how many of its tokens must be recomputed, as a prompt
    /// (positions from 0), which is what makes the blocks hashable again after a compaction.
    pub fn resume(&mut self, id: SeqId) -> Result<Allocation, BlockError> {
        let seq = self.seqs.get(&id).ok_or(BlockError::UnknownSequence(id))?;
        let Place::Dropped(tokens) = &seq.place else {
            return Err(BlockError::NotDropped(id, seq.residency()));
        };
        let tokens = tokens.clone();
        let (table, num_cached_tokens) = self.allocate_prompt(&tokens)?;
        self.set_place(id, Place::Device(table));
        Ok(Allocation {
            num_tokens: tokens.len(),
            num_cached_tokens,
        })
    }

    /// Keeps the tokens of a sequence on the device at positions `kept` (strictly increasing, below
    /// its token count; empty keeps none) and evicts the others: `kept.len()` tokens in
    /// `ceil(kept.len() / block_size)` fresh blocks, whose K/V the caller gathers from the old
    /// blocks with the returned plan. The sequence is compacted from then on: neither these blocks
    /// nor any it fills later are hashed (see the module header).
    ///
    /// The fresh blocks are allocated while the old ones are still held, since the gather reads
    /// the old blocks while it writes the new ones: this needs `ceil(kept.len() / block_size)` free
    /// or evictable blocks besides the sequence's own, although its table ends up no longer than
    /// before. Only then are the old blocks released, the way [`BlockManager::free_sequence`]
    /// would: blocks that a fork or another prompt shares stay theirs, and full ones, hashed, are
    /// cached for later prompts. The caller runs the gather before the K/V writes of any later
    /// operation, which may reuse them.
    pub fn compact(&mut self, id: SeqId, kept: &[usize]) -> Result<CompactPlan, BlockError> {
        let (table, num_tokens) = self.device_table(id)?;
        let mut next = 0;
        for (index, &position) in kept.iter().enumerate() {
            if position < next || position >= num_tokens {
                return Err(BlockError::InvalidKept {
                    id,
                    index,
                    position,
                    num_tokens,
                });
            }
            next = position + 1;
        }
        let bs = self.block_size();
        self.ensure_blocks(kept.len().div_ceil(bs), 0)?;
        let old_table = table.to_vec();
        let old_tokens = self.device.gather(&old_table);
        let tokens: Vec<u32> = kept.iter().map(|&p| old_tokens[p]).collect();
        let new_table: Vec<u32> = tokens
            .chunks(bs)
            .map(|chunk| {
                let block = self.take_block();
                self.device.fill(block, chunk, Chain::Compacted);
                block
            })
            .collect();
        self.release_all(&old_table);
        let seq = self.seqs.get_mut(&id).expect("checked above");
        seq.num_tokens = kept.len();
        seq.place = Place::Device(new_table.clone());
        seq.compacted = true;
        Ok(CompactPlan {
            old_table,
            new_table,
            kept: kept.to_vec(),
        })
    }

    /// Whether the sequence was compacted since it was added or last resumed (never while it is
    /// dropped): if so, its blocks are not hashed and no prompt can share them.
    pub fn is_compacted(&self, id: SeqId) -> Result<bool, BlockError> {
        self.seq(id).map(|seq| seq.compacted)
    }

    /// The device blocks of a sequence on the device, in token order.
    pub fn block_table(&self, id: SeqId) -> Result<&[u32], BlockError> {
        self.device_table(id).map(|(table, _)| table)
    }

    pub fn num_tokens(&self, id: SeqId) -> Result<usize, BlockError> {
        self.seq(id).map(|seq| seq.num_tokens)
    }

    pub fn residency(&self, id: SeqId) -> Result<Residency, BlockError> {
        self.seq(id).map(Sequence::residency)
    }

    /// A sequence's token ids, read back from wherever it is.
    pub fn tokens(&self, id: SeqId) -> Result<Vec<u32>, BlockError> {
        Ok(match &self.seq(id)?.place {
            Place::Device(table) => self.device.gather(table),
            Place::Host(slots) => self.host.gather(slots),
            Place::Dropped(tokens) => tokens.clone(),
        })
    }

    /// Blocks on the free list (not counting cached blocks, which are evictable too).
    pub fn num_free_blocks(&self) -> usize {
        self.free.len()
    }

    /// Blocks no sequence holds but kept for their prefix hash, evictable.
    pub fn num_cached_blocks(&self) -> usize {
        self.lru.len()
    }

    pub fn num_free_host_slots(&self) -> usize {
        self.host_free.len()
    }

    /// How many block-table entries point at `block` (0 if it is free or cached). Panics if the
    /// block is out of range.
    pub fn refcount(&self, block: u32) -> u32 {
        match self.state[block as usize] {
            BlockState::Held { refs } => refs,
            BlockState::Free | BlockState::Cached { .. } => 0,
        }
    }

    /// Whether `n_blocks` new blocks can be allocated now, by taking free or evicting cached ones.
    pub fn can_allocate(&self, n_blocks: usize) -> bool {
        n_blocks <= self.free.len() + self.lru.len()
    }

    /// Checks every invariant of the module header from scratch: each block in exactly one state,
    /// refcounts equal to the table entries pointing at the block, hashes matching content and
    /// chained along each sequence, the pages of a compacted sequence all unhashed and those of
    /// any other sequence all chained (so that none is shared between the two kinds), no dropped
    /// sequence compacted, each host slot free or owned by exactly one sequence.
    pub fn check_invariants(&self) -> Result<(), String> {
        let mut owners = vec![0u32; self.device.count()];
        let mut host_owners = vec![0u32; self.host.count()];
        for (id, seq) in &self.seqs {
            let (pages, ids, owned) = match &seq.place {
                Place::Device(table) => (&self.device, table, &mut owners),
                Place::Host(slots) => (&self.host, slots, &mut host_owners),
                Place::Dropped(_) if seq.compacted => {
                    return Err(format!("dropped sequence {id} is marked compacted"));
                }
                Place::Dropped(tokens) if tokens.len() == seq.num_tokens => continue,
                Place::Dropped(tokens) => {
                    let kept = tokens.len();
                    return Err(format!(
                        "dropped sequence {id} keeps {kept} of {} tokens",
                        seq.num_tokens
                    ));
                }
            };
            pages
                .check_sequence(ids, seq.num_tokens, seq.compacted)
                .map_err(|e| format!("sequence {id} ({}): {e}", seq.residency()))?;
            for &page in ids {
                owned[page as usize] += 1;
            }
        }
        let mut on_free = vec![0u32; self.device.count()];
        for &block in &self.free {
            *on_free
                .get_mut(block as usize)
                .ok_or(format!("free block {block} out of range"))? += 1;
        }
        let mut in_lru = vec![0u32; self.device.count()];
        for (&tick, &block) in &self.lru {
            let state = self
                .state
                .get(block as usize)
                .ok_or(format!("cached block {block} out of range"))?;
            if *state != (BlockState::Cached { tick }) {
                return Err(format!(
                    "block {block} in the LRU at tick {tick} but {state:?}"
                ));
            }
            in_lru[block as usize] += 1;
        }
        for (i, &state) in self.state.iter().enumerate() {
            let block = i as u32;
            let hash = self.device.meta(block).hash;
            let counts = (on_free[i], in_lru[i], owners[i]);
            let ok = match state {
                BlockState::Free => counts == (1, 0, 0) && hash.is_none(),
                BlockState::Cached { .. } => {
                    counts == (0, 1, 0)
                        && hash.is_some_and(|h| self.by_hash.get(&h) == Some(&block))
                }
                BlockState::Held { refs } => counts == (0, 0, refs) && refs > 0,
            };
            if !ok {
                let (free, lru, tables) = counts;
                return Err(format!(
                    "block {block} is {state:?} with hash {hash:?}, but on the free list {free} \
                     times, in the LRU {lru} times, in {tables} block-table entries"
                ));
            }
            self.device.check_hash(block)?;
        }
        for (&h, &block) in &self.by_hash {
            let registered = self.device.count() > block as usize
                && self.device.meta(block).hash == Some(h)
                && self.state[block as usize] != BlockState::Free;
            if !registered {
                return Err(format!(
                    "hash {h:#x} registered to block {block}, which does not hold it"
                ));
            }
        }
        for &slot in &self.host_free {
            *host_owners
                .get_mut(slot as usize)
                .ok_or(format!("free host slot {slot} out of range"))? += 1;
        }
        for (slot, &count) in host_owners.iter().enumerate() {
            if count != 1 {
                return Err(format!(
                    "host slot {slot} is free or owned {count} times, not once"
                ));
            }
            self.host
                .check_hash(slot as u32)
                .map_err(|e| format!("host {e}"))?;
        }
        Ok(())
    }

    fn seq(&self, id: SeqId) -> Result<&Sequence, BlockError> {
        self.seqs.get(&id).ok_or(BlockError::UnknownSequence(id))
    }

    fn set_place(&mut self, id: SeqId, place: Place) {
        self.seqs
            .get_mut(&id)
            .expect("the caller checked the sequence")
            .place = place;
    }

    fn device_table(&self, id: SeqId) -> Result<(&[u32], usize), BlockError> {
        let seq = self.seq(id)?;
        match &seq.place {
            Place::Device(table) => Ok((table, seq.num_tokens)),
            _ => Err(BlockError::NotOnDevice(id, seq.residency())),
        }
    }

    /// Allocates a prompt's blocks: the cached prefix by hash, the rest fresh. Changes nothing if
    /// the blocks do not fit.
    fn allocate_prompt(&mut self, tokens: &[u32]) -> Result<(Vec<u32>, usize), BlockError> {
        let bs = self.block_size();
        let mut hits = Vec::new();
        let mut parent = None;
        for chunk in tokens.chunks_exact(bs) {
            let hash = chain_hash(parent, chunk);
            let Some(&block) = self.by_hash.get(&hash) else {
                break;
            };
            debug_assert_eq!(self.device.tokens(block), chunk, "prefix hash collision");
            hits.push(block);
            parent = Some(hash);
        }
        let lru_hits = hits.iter().filter(|&&b| self.refcount(b) == 0).count();
        self.ensure_blocks(tokens.len().div_ceil(bs) - hits.len(), lru_hits)?;
        // Hits first: allocating the misses must not evict a block this prompt is about to share.
        for &block in &hits {
            self.acquire(block);
        }
        let num_cached_tokens = hits.len() * bs;
        let mut table = hits;
        for chunk in tokens[num_cached_tokens..].chunks(bs) {
            let block = self.take_block();
            self.device.fill(block, chunk, Chain::After(parent));
            self.register(block);
            parent = self.device.meta(block).hash;
            table.push(block);
        }
        Ok((table, num_cached_tokens))
    }

    /// Fails unless `needed` blocks can be allocated once `reserved` cached blocks are taken back
    /// by hash (those can no longer be evicted).
    fn ensure_blocks(&self, needed: usize, reserved: usize) -> Result<(), BlockError> {
        let available = self.free.len() + self.lru.len() - reserved;
        if needed > available {
            return Err(BlockError::OutOfBlocks { needed, available });
        }
        Ok(())
    }

    /// A block with refcount 1: a free one, else the least recently released cached one, whose hash
    /// is dropped. Callers check capacity first.
    fn take_block(&mut self) -> u32 {
        let block = self.free.pop().unwrap_or_else(|| {
            let (_, block) = self
                .lru
                .pop_first()
                .expect("capacity checked by the caller");
            let hash = self
                .device
                .meta(block)
                .hash
                .expect("cached blocks are hashed");
            self.by_hash.remove(&hash);
            block
        });
        self.state[block as usize] = BlockState::Held { refs: 1 };
        block
    }

    /// One more reference to a held or cached block.
    fn acquire(&mut self, block: u32) {
        let state = &mut self.state[block as usize];
        *state = match *state {
            BlockState::Held { refs } => BlockState::Held { refs: refs + 1 },
            BlockState::Cached { tick } => {
                self.lru.remove(&tick);
                BlockState::Held { refs: 1 }
            }
            BlockState::Free => {
                unreachable!("block {block} is free: no table or hash points at it")
            }
        };
    }

    /// Registers a full block under its hash unless another block already holds that hash.
    fn register(&mut self, block: u32) {
        if let Some(hash) = self.device.meta(block).hash {
            self.by_hash.entry(hash).or_insert(block);
        }
    }

    /// One reference less; at zero the block is cached if it is the one registered under its hash
    /// (or can become it), and free otherwise.
    fn release(&mut self, block: u32) {
        let BlockState::Held { refs } = self.state[block as usize] else {
            unreachable!("released block {block} is not held")
        };
        if refs > 1 {
            self.state[block as usize] = BlockState::Held { refs: refs - 1 };
            return;
        }
        let meta = &mut self.device.meta[block as usize];
        match meta.hash {
            Some(hash) if *self.by_hash.entry(hash).or_insert(block) == block => {
                self.state[block as usize] = BlockState::Cached {
                    tick: self.next_tick,
                };
                self.lru.insert(self.next_tick, block);
                self.next_tick += 1;
            }
            _ => {
                *meta = PageMeta::default();
                self.state[block as usize] = BlockState::Free;
                self.free.push(block);
            }
        }
    }

    /// Releases a block table last block first, so the LRU evicts a sequence's tail before its
    /// head.
    fn release_all(&mut self, table: &[u32]) {
        for &block in table.iter().rev() {
            self.release(block);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use proptest::sample::Index;

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
        m.swap_out(B).unwrap();
        assert!(m.swap_in(B).unwrap().pairs.is_empty());
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
        let mut m = BlockManager::new(3, 2, 0);
        let prompts = [[1, 2], [3, 4], [5, 6]];
        for (i, p) in prompts.iter().enumerate() {
            m.add_sequence(SeqId(i as u64), p).unwrap();
        }
        let blocks: Vec<u32> = (0..3).map(|i| table(&m, SeqId(i))[0]).collect();
        for i in [0, 2, 1] {
            m.free_sequence(SeqId(i)).unwrap();
        }
        assert_eq!((m.num_free_blocks(), m.num_cached_blocks()), (0, 3));
        // Evicts sequence 0's block, released first.
        assert_eq!(
            m.add_sequence(SeqId(10), &[7, 8])
                .unwrap()
                .num_cached_tokens,
            0
        );
        assert_eq!(table(&m, SeqId(10)), [blocks[0]]);
        // The other two still hit.
        assert_eq!(
            m.add_sequence(SeqId(11), &[5, 6])
                .unwrap()
                .num_cached_tokens,
            2
        );
        assert_eq!(table(&m, SeqId(11)), [blocks[2]]);
        m.free_sequence(SeqId(11)).unwrap();
        // [1, 2] no longer hits; the oldest cached block now is sequence 1's.
        assert_eq!(
            m.add_sequence(SeqId(12), &[1, 2])
                .unwrap()
                .num_cached_tokens,
            0
        );
        assert_eq!(table(&m, SeqId(12)), [blocks[1]]);
        assert_eq!(
            m.add_sequence(SeqId(13), &[5, 6])
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
        assert_eq!(
            m.add_sequence(C, &[1, 2, 3, 4]).unwrap().num_cached_tokens,
            4
        );
        assert_eq!(table(&m, C), a[..2]);
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
        assert_eq!(m.swap_out(A), slots);
        assert_eq!(m.swap_in(A), Err(NotSwapped(A, Residency::Device)));
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
        let out = m.swap_out(A).unwrap();
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
        let back = m.swap_in(A).unwrap();
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
        // Restored full blocks are prefix-cached again.
        assert_eq!(
            m.add_sequence(C, &prompt[..8]).unwrap().num_cached_tokens,
            8
        );

        // A quick round trip finds the full blocks still cached and copies only the partial one.
        m.free_sequence(C).unwrap();
        m.swap_out(A).unwrap();
        let back = m.swap_in(A).unwrap();
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
        let out = m.swap_out(B).unwrap();
        assert_eq!(out.pairs.len(), 3);
        assert_eq!(table(&m, A), shared);
        assert!(shared.iter().all(|&b| m.refcount(b) == 1));
        m.append_token(A, 6).unwrap();
        // Back in: the full blocks are still held by A and shared again; the partial one, which A
        // has since written to, comes from the host copy.
        let back = m.swap_in(B).unwrap();
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
                if m.append_token(id, (ops % 101) as u32).is_err()
                    || m.num_tokens(id).unwrap() > 300
                {
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

    fn hashes(m: &BlockManager, blocks: &[u32]) -> Vec<Option<u64>> {
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
        let plan = m.compact(A, &kept).unwrap();
        assert_eq!(
            (plan.old_table.as_slice(), plan.kept.as_slice()),
            (&shared[..], &kept[..])
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
            m.add_sequence(C, &prompt[..8]).unwrap().num_cached_tokens,
            8
        );
        assert_eq!(table(&m, C), shared[..2]);

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
        let plan = m.compact(A, &[1, 2, 3, 4]).unwrap();
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
        m.swap_out(A).unwrap();
        let back = m.swap_in(A).unwrap();
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
            m.add_sequence(A, &[1, 2, 3, 4]).unwrap().num_cached_tokens,
            4
        );
        assert_eq!(table(&m, A), b);
        checked(&m);
    }

    #[test]
    fn appending_after_compaction_fills_blocks_without_hashes() {
        let mut m = BlockManager::new(8, 2, 0);
        m.add_sequence(A, &[7, 7, 1, 2, 3]).unwrap();
        // Keep 3 tokens: a full block and a partial one, which appends fill.
        let plan = m.compact(A, &[2, 3, 4]).unwrap();
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
        let plan = m.compact(A, &[]).unwrap();
        assert_eq!((plan.old_table, plan.new_table), (a, vec![]));
        assert_eq!((m.num_tokens(A), table(&m, A).len()), (Ok(0), 0));
        m.append_token(A, 1).unwrap();
        m.append_token(A, 2).unwrap();
        assert_eq!(hashes(&m, &table(&m, A)), [None]);
        assert_eq!(m.add_sequence(C, &[1, 2]).unwrap().num_cached_tokens, 2);
        assert_eq!(table(&m, C), table(&m, B)[..1]);
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
        assert_eq!(m.compact(A, &[0, 2, 4]), oob(2, 1));
        assert_eq!(m, before);
        // Keeping 2 fits in the free block.
        let plan = m.compact(A, &[0, 5]).unwrap();
        assert_eq!(m.tokens(A).unwrap(), [1, 6]);
        // A's old blocks are all full, so all cached: compaction may evict them, oldest first
        // (A's tail).
        assert_eq!((m.num_free_blocks(), m.num_cached_blocks()), (0, 3));
        let again = m.compact(A, &[1]).unwrap();
        assert_eq!(again.new_table, plan.old_table[2..]);
        assert_eq!(m.tokens(A).unwrap(), [6]);
        // Every block held: even keeping A's single token needs a fresh block.
        m.add_sequence(B, &[8; 6]).unwrap();
        let before = m.clone();
        assert_eq!(m.compact(A, &[0]), oob(1, 0));
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
                index,
                position,
                num_tokens: 5,
            })
        };
        assert_eq!(m.compact(A, &[0, 5]), invalid(1, 5));
        assert_eq!(m.compact(A, &[9]), invalid(0, 9));
        assert_eq!(m.compact(A, &[1, 1]), invalid(1, 1));
        assert_eq!(m.compact(A, &[0, 3, 2, 4]), invalid(2, 2));
        assert_eq!(
            invalid(2, 2).unwrap_err().to_string(),
            "kept positions of sequence 1 must be strictly increasing and below its 5 tokens: \
             kept[2] = 2 is not"
        );
        assert_eq!(m.compact(B, &[]), Err(UnknownSequence(B)));
        assert_eq!(m, before);
        m.swap_out(A).unwrap();
        let before = m.clone();
        assert_eq!(m.compact(A, &[0]), Err(NotOnDevice(A, Residency::Host)));
        assert_eq!(m, before);
        checked(&m);
    }

    #[test]
    fn a_resumed_compacted_sequence_is_a_prompt_again() {
        let mut m = BlockManager::new(8, 2, 0);
        m.add_sequence(A, &[7, 1, 2, 3]).unwrap();
        m.compact(A, &[1, 2, 3]).unwrap();
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
            m.add_sequence(C, &[1, 2, 3, 4]).unwrap().num_cached_tokens,
            4
        );
        assert_eq!(table(&m, C), table(&m, A));
        checked(&m);
    }

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
            Op::Compact(id, ref kept) => need(id, Residency::Device, BlockError::NotOnDevice)
                .or_else(|| {
                    let num_tokens = shadow[&id].tokens.len();
                    let bad = |i: usize| kept[i] >= num_tokens || (i > 0 && kept[i] <= kept[i - 1]);
                    let index = (0..kept.len()).find(|&i| bad(i))?;
                    Some(BlockError::InvalidKept {
                        id,
                        index,
                        position: kept[index],
                        num_tokens,
                    })
                }),
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
}
