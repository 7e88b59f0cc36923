//! Planning, without I/O: splitting jobs into work units, the fleet's fair share between
//! claimants, and placing work units on agents.

pub mod placement;
pub mod share;
pub mod split;
