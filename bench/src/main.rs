//! The `bench` binary (subcommands added below).

fn main() {}
