//! minicloud scheduler: places VMs on host capacity.
