//! KV-cache eviction (issue 6): the block manager of a paged cache, token-level eviction policies
//! with their CPU references, the GPU score / select / compact / swap kernels, and the accuracy
//! each policy costs.

pub mod accuracy;
pub mod block_manager;
pub mod policy;
