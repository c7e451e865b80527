//! The `rlhf` command line: thin wrappers over the engine (src/) and the actor stages.
//! Every user mistake ends as one `error:` line and exit code 2; nothing panics on bad input.

use clap::Parser;
use rlhf_actors::cli;

fn main() {
    rlhf_actors::allocator::keep_freed_memory();
    let args = cli::Cli::parse();
    cli::init_logging(args.log_format);
    if let Err(e) = cli::run(args) {
        // `{:#}` prints the whole context chain on one line.
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}
