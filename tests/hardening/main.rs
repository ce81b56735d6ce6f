//! Adversarial tests, one file per class of failure (issue "Hardening"): inputs that must not
//! hang (`hangs`), work that must stay bounded (`bounds`, `threads`), crashes and interrupts at
//! the worst moment (`crash`, `interrupt`), two processes at once (`concurrent`), and errors
//! that must name the right thing (`naming`). Each drives the real binary.

#[path = "../common/mod.rs"]
mod common;

mod bounds;
mod concurrent;
mod crash;
mod hangs;
mod interrupt;
mod naming;
mod threads;
