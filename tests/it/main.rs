//! Integration tests of the `gs-lora` program, one binary: the commands end to end, the
//! `forward` command against reference outputs, and hostile input (broken files, kills,
//! concurrent runs).

mod common;

mod cli;
mod command_line;
mod compare;
mod forward_cli;
mod reliability;
