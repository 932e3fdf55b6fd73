//! The indicatif implementation of the library's `Reporter`: one byte bar
//! per phase on stderr, hidden when stderr is not a terminal or with
//! `--quiet`.

use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        Bars {
            bar: Mutex::new(None),
            quiet,
        }
    }
}

impl ferry::report::Reporter for Bars {
    fn start(&self, phase: &str, total_bytes: u64) {
        let target = if self.quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let bar = if total_bytes > 0 {
            let b = ProgressBar::with_draw_target(Some(total_bytes), target);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg:>18} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b
        } else {
            let b = ProgressBar::with_draw_target(None, target);
            b.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b
        };
        bar.set_message(phase.to_owned());
        if let Ok(mut g) = self.bar.lock() {
            *g = Some(bar);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Ok(g) = self.bar.lock() {
            if let Some(b) = g.as_ref() {
                b.inc(bytes);
            }
        }
    }

    fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    fn finish(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                b.finish_and_clear();
            }
        }
    }
}
