//! Black-box tests of the agent against an in-process fake-loki on a temporary pods root.

mod delivery;
mod fdbudget;
mod helpers;
mod process;
mod rotation;
mod script;
