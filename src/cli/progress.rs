//! The indicatif implementation of the library's `Reporter`: one byte bar
//! per phase on stderr, hidden when stderr is not a terminal or with
//! `--quiet`.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    bar: Mutex<Option<ProgressBar>>,
    multi: MultiProgress,
    items: Mutex<HashMap<u64, ProgressBar>>,
    quiet: bool,
}

impl Bars {
    pub fn new(quiet: bool) -> Bars {
        let multi = MultiProgress::with_draw_target(if quiet {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        Bars {
            bar: Mutex::new(None),
            multi,
            items: Mutex::new(HashMap::new()),
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
        let bar = self.multi.add(bar);
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
        // Warnings show with --quiet too: it turns off progress, not what
        // the user must know. Printed above the bars, escaped.
        let line = super::escape_controls(message);
        self.multi.suspend(|| eprintln!("{line}"));
    }

    fn finish(&self) {
        if let Ok(mut g) = self.bar.lock() {
            if let Some(b) = g.take() {
                b.finish_and_clear();
            }
        }
    }

    fn item_start(&self, id: u64, label: &str, total_bytes: u64) {
        if self.quiet {
            return;
        }
        let b = self.multi.add(ProgressBar::new(total_bytes));
        b.set_style(
            ProgressStyle::with_template("  {msg:<24} [{bar:20}] {bytes}/{total_bytes}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        b.set_message(label.to_owned());
        if let Ok(mut g) = self.items.lock() {
            g.insert(id, b);
        }
    }

    fn item_advance(&self, id: u64, bytes: u64) {
        if let Ok(g) = self.items.lock() {
            if let Some(b) = g.get(&id) {
                b.inc(bytes);
            }
        }
    }

    fn item_finish(&self, id: u64) {
        if let Ok(mut g) = self.items.lock() {
            if let Some(b) = g.remove(&id) {
                b.finish_and_clear();
                self.multi.remove(&b);
            }
        }
    }
}
