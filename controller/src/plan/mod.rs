//! Planning, without I/O: splitting jobs into work units and placing them on agents.

pub mod placement;
pub mod split;
