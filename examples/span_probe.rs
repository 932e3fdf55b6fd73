use granit_parser::{Event, Parser};
fn main() {
    let text = std::env::args().nth(1).unwrap().replace("\\n", "\n");
    for ev in Parser::new_from_str(&text) {
        let (ev, span) = ev.unwrap();
        println!("{:?} {:?} line {}", ev, span.byte_range(), span.start.line());
    }
}
