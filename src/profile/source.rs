//! Where things are in a profile's text, read from the YAML parser's events: the place of every
//! mapping key by its path (so an unknown key found by serde, which knows only the path, is
//! shown where it is written), the path of every scalar value and the extent of every scalar and
//! mapping (so an error found by position names the whole key path, a caret underlines the whole
//! value, and a missing key is shown at the mapping that lacks it).

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// One step of a path into the document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

/// A place in the text: 1-based line, 1-based column in characters (as serde-saphyr counts).
pub(super) type Place = (u64, u64);

/// The places of the keys and scalars of one text.
#[derive(Default)]
pub(super) struct Spans {
    keys: HashMap<Vec<Segment>, Place>,
    /// Scalar start -> the column just past its end, when it ends on the same line.
    scalar_ends: HashMap<Place, u64>,
    /// Scalar value start -> its path.
    values: HashMap<Place, Vec<Segment>>,
    /// Every mapping: its path and start.
    mappings: Vec<(Vec<Segment>, Place)>,
}

/// A collection being walked.
enum Frame {
    Map {
        path: Vec<Segment>,
        start: Place,
        /// The key whose value comes next; `None` while a key is expected.
        key: Option<Segment>,
    },
    Seq {
        path: Vec<Segment>,
        next: usize,
    },
}

impl Spans {
    /// Walks `text`; stops quietly at a syntax error (the parse that follows reports it).
    pub(super) fn of(text: &str) -> Spans {
        let mut spans = Spans::default();
        let mut stack: Vec<Frame> = Vec::new();
        for item in Parser::new_from_str(text) {
            let Ok((event, span)) = item else { break };
            let start: Place = (span.start.line() as u64, span.start.col() as u64 + 1);
            match event {
                Event::Scalar(value, ..) => {
                    if span.end.line() == span.start.line() {
                        spans.scalar_ends.insert(start, span.end.col() as u64 + 1);
                    }
                    match stack.last_mut() {
                        Some(Frame::Map { path, key, .. }) if key.is_none() => {
                            let k = Segment::Key(value.into_owned());
                            let mut at = path.clone();
                            at.push(k.clone());
                            spans.keys.insert(at, start);
                            *key = Some(k);
                        }
                        _ => {
                            spans.values.insert(start, child_path(&stack));
                            value_done(&mut stack);
                        }
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = child_path(&stack);
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map {
                            path,
                            start,
                            key: None,
                        }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    if let Some(Frame::Map { path, start, .. }) = stack.pop() {
                        spans.mappings.push((path, start));
                    }
                    value_done(&mut stack);
                }
                Event::Alias(..) => value_done(&mut stack),
                _ => {}
            }
        }
        spans
    }

    /// Where the key at `path` (its last segment) is written.
    pub(super) fn key(&self, path: &[Segment]) -> Option<Place> {
        self.keys.get(path).copied()
    }

    /// The column just past the scalar that starts at `place`, when there is one on that line.
    pub(super) fn scalar_end(&self, place: Place) -> Option<u64> {
        self.scalar_ends.get(&place).copied()
    }

    /// The path of the scalar value that starts at `place`.
    pub(super) fn value(&self, place: Place) -> Option<&[Segment]> {
        self.values.get(&place).map(Vec::as_slice)
    }

    /// The path of the key written at `place` (of its last writing, for a duplicate key).
    pub(super) fn key_at(&self, place: Place) -> Option<&[Segment]> {
        self.keys
            .iter()
            .find(|(_, at)| **at == place)
            .map(|(path, _)| path.as_slice())
    }

    /// The path of the mapping whose key is written at `place`.
    pub(super) fn mapping_of_key_at(&self, place: Place) -> Option<&[Segment]> {
        self.key_at(place)
            .and_then(|path| path.split_last())
            .map(|(_, parent)| parent)
    }

    /// Where the mapping at `path` is best shown: at its key in the mapping around it, else
    /// (an item of a list) where it starts.
    pub(super) fn mapping_place(&self, path: &[Segment]) -> Option<Place> {
        self.key(path).or_else(|| {
            self.mappings
                .iter()
                .find(|(p, ..)| p == path)
                .map(|(_, start)| *start)
        })
    }
}

/// `nodes[3].mac`: the form every profile problem names its key in.
pub(super) fn dotted(path: &[Segment]) -> String {
    let mut s = String::new();
    for seg in path {
        match seg {
            Segment::Key(k) if s.is_empty() => s.push_str(k),
            Segment::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Segment::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

/// The path of the node that starts now, inside the collection on top of `stack`. A
/// collection used as a mapping key (never valid in a profile: serde reports it) gets a path
/// that no key of the profile has.
fn child_path(stack: &[Frame]) -> Vec<Segment> {
    let (path, last) = match stack.last() {
        None => return Vec::new(),
        Some(Frame::Map { path, key, .. }) => {
            (path, key.clone().unwrap_or(Segment::Key("?".into())))
        }
        Some(Frame::Seq { path, next }) => (path, Segment::Index(*next)),
    };
    let mut p = path.clone();
    p.push(last);
    p
}

/// A value (scalar, alias or whole collection) ended: a mapping expects its next key, a
/// sequence counts it.
fn value_done(stack: &mut [Frame]) {
    match stack.last_mut() {
        Some(Frame::Map { key, .. }) => *key = None,
        Some(Frame::Seq { next, .. }) => *next += 1,
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(s: &str) -> Segment {
        Segment::Key(s.into())
    }

    #[test]
    fn keys_by_path_and_scalar_extents() {
        let text = "name: x\ncluster:\n  pod_cidrr: 10.0.0.0/12\nnodes:\n  - { name: a, macc: \"52:52\" }\n  - name: b\n    idd: 3\n";
        let s = Spans::of(text);
        assert_eq!(s.key(&[k("name")]), Some((1, 1)));
        assert_eq!(s.key(&[k("cluster"), k("pod_cidrr")]), Some((3, 3)));
        assert_eq!(
            s.key(&[k("nodes"), Segment::Index(0), k("macc")]),
            Some((5, 16))
        );
        assert_eq!(
            s.key(&[k("nodes"), Segment::Index(1), k("idd")]),
            Some((7, 5))
        );
        // `10.0.0.0/12` runs from column 14 to 24; the quoted MAC includes its quotes.
        assert_eq!(s.scalar_end((3, 14)), Some(25));
        assert_eq!(s.scalar_end((5, 22)), Some(29));
        assert_eq!(
            s.value((7, 10)),
            Some(&[k("nodes"), Segment::Index(1), k("idd")][..])
        );
        assert_eq!(
            s.value((5, 13)),
            Some(&[k("nodes"), Segment::Index(0), k("name")][..])
        );
        let mapping = s.mapping_of_key_at((5, 16)).unwrap();
        assert_eq!(dotted(mapping), "nodes[0]");
        assert_eq!(s.mapping_place(mapping), Some((5, 5)));
        let mapping = s.mapping_of_key_at((3, 3)).unwrap();
        assert_eq!(s.mapping_place(mapping), Some((2, 1)));
        assert_eq!(s.mapping_of_key_at((1, 1)), Some(&[][..]));
    }

    #[test]
    fn a_syntax_error_keeps_what_came_before() {
        let s = Spans::of("a: 1\nb: [\n");
        assert_eq!(s.key(&[k("a")]), Some((1, 1)));
    }
}
