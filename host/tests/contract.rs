//! The SDKs stay true to the contract: a change to `wit/`'s `produce-error` or to the layouts
//! the hand-written Go bindings read must fail a test here for every language whose SDK does
//! not follow, instead of compiling to something that reads one case as another.
//!
//! The WIT is read with wit-parser (as wit-bindgen reads it), and each SDK's own list of the
//! cases is read from its source: C's `kinds` table (in order: codes are computed from it),
//! Zig's `fromC` (every case named, no `else` arm reading an unknown tag as a case), Python's
//! `_from_wit`, JS's `VARIANTS`, Go's `loadProduceError` (every discriminant) and every size and
//! offset Go's bindings read or write (named constants in abi_wasm.go: reports, errors,
//! receipts, headers, config pairs; abi_wasm.go holds its header struct to them at compile
//! time), computed here for wasm32. Rust needs no test: its bindings are
//! generated and its `match` is exhaustive, so a new case fails its build; only the copy of
//! `wit/` it is packaged with is checked to be the same file.

use std::path::{Path, PathBuf};

use wit_parser::{Resolve, SizeAlign, Type, TypeDefKind, TypeId};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn source(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

struct Contract {
    resolve: Resolve,
    sizes: SizeAlign,
}

impl Contract {
    fn read() -> Contract {
        let mut resolve = Resolve::new();
        // A changed copy can stand in (`WAFKA_CONTRACT_WIT=DIR`), to see these tests fail
        // before the host itself follows the change.
        let wit = std::env::var_os("WAFKA_CONTRACT_WIT")
            .map(PathBuf::from)
            .unwrap_or_else(|| root().join("wit"));
        resolve.push_dir(&wit).expect("the WIT parses");
        let mut sizes = SizeAlign::default();
        sizes.fill(&resolve);
        Contract { resolve, sizes }
    }

    fn ty(&self, name: &str) -> TypeId {
        self.resolve
            .types
            .iter()
            .find(|(_, t)| t.name.as_deref() == Some(name))
            .map(|(id, _)| id)
            .unwrap_or_else(|| panic!("no type `{name}` in wit/"))
    }

    /// The `produce-error` cases, in order.
    fn error_cases(&self) -> Vec<String> {
        match &self.resolve.types[self.ty("produce-error")].kind {
            TypeDefKind::Variant(v) => v.cases.iter().map(|c| c.name.clone()).collect(),
            other => panic!("produce-error is not a variant: {other:?}"),
        }
    }

    fn size(&self, name: &str) -> usize {
        self.sizes.size(&Type::Id(self.ty(name))).size_wasm32()
    }
}

fn upper_snake(kebab: &str) -> String {
    kebab.replace('-', "_").to_uppercase()
}

fn camel(kebab: &str) -> String {
    kebab
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

/// The text of `src` from the line containing `start` to the next line containing `end`.
fn section<'a>(src: &'a str, start: &str, end: &str, what: &str) -> &'a str {
    let from = src
        .find(start)
        .unwrap_or_else(|| panic!("{what}: no `{start}`"));
    let to = src[from..]
        .find(end)
        .map(|i| from + i)
        .unwrap_or_else(|| panic!("{what}: no `{end}` after `{start}`"));
    &src[from..to]
}

#[test]
fn c_kinds_table_is_the_wit_cases_in_order() {
    let cases = Contract::read().error_cases();
    let c = source("guest-sdk/c/src/wafka.c");
    let table = section(&c, "static const char *const kinds[]", "};", "wafka.c");
    let listed: Vec<&str> = table.split('"').skip(1).step_by(2).collect();
    assert_eq!(
        listed, cases,
        "guest-sdk/c/src/wafka.c `kinds` must list wit/'s produce-error cases in order (the \
         WAFKA_ERR_* codes are computed from the position)"
    );
    // wafka.c computes a case's code from its position: WAFKA_ERR_NOT_AUTHORIZED (-2) minus it.
    let header = source("guest-sdk/c/include/wafka.h");
    for (i, case) in cases.iter().enumerate() {
        let code = format!("WAFKA_ERR_{} = -{},", upper_snake(case), i + 2);
        assert!(
            header.contains(&code),
            "wafka.h must define `{code}` (the case's position in wit/)"
        );
    }
}

#[test]
fn zig_names_every_case_and_reads_no_unknown_tag_as_one() {
    let cases = Contract::read().error_cases();
    let zig = source("guest-sdk/zig/wafka.zig");
    let from_c = section(&zig, "fn fromC(", "\n    }\n", "wafka.zig");
    for case in &cases {
        let tag = format!(
            "c.WAFKA_PRODUCER_TYPES_PRODUCE_ERROR_{} =>",
            upper_snake(case)
        );
        assert!(from_c.contains(&tag), "wafka.zig fromC has no arm `{tag}`");
    }
    for line in from_c
        .lines()
        .filter(|l| l.trim_start().starts_with("else =>"))
    {
        assert!(
            line.contains("@panic"),
            "wafka.zig fromC reads an unknown tag as a case: `{}`",
            line.trim()
        );
    }
}

#[test]
fn python_maps_every_case() {
    let cases = Contract::read().error_cases();
    let py = source("guest-sdk/python/wafka/__init__.py");
    let from_wit = section(&py, "def _from_wit(", "\ndef ", "wafka/__init__.py");
    for case in &cases {
        let class = format!("w.ProduceError_{})", camel(case));
        assert!(
            from_wit.contains(&class),
            "_from_wit has no `isinstance(e, {class}`"
        );
    }
}

#[test]
fn js_maps_every_case_and_only_those() {
    let cases = Contract::read().error_cases();
    let js = source("guest-sdk/js/index.js");
    let table = section(&js, "const VARIANTS = {", "};", "index.js");
    let mut keys: Vec<String> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            l.trim()
                .split_once(':')
                .map(|(k, _)| k.trim_matches('"').to_string())
        })
        .collect();
    keys.sort();
    let mut want = cases.clone();
    want.sort();
    assert_eq!(keys, want, "guest-sdk/js/index.js VARIANTS");
}

#[test]
fn go_reads_every_case_at_the_layout_of_wasm32() {
    let contract = Contract::read();
    let cases = contract.error_cases();
    let go = source("guest-sdk/go/abi_wasm.go");
    let load = section(&go, "func loadProduceError(", "\n}\n", "abi_wasm.go");
    for (i, case) in cases.iter().enumerate() {
        assert!(
            load.contains(&format!("case {i}:")),
            "loadProduceError does not read case {i} ({case})"
        );
    }
    assert!(
        !load.contains(&format!("case {}:", cases.len())),
        "loadProduceError reads a case wit/ does not have"
    );
    // Where the hand-written bindings read: abi_wasm.go names every offset it uses.
    let constants = go_constants(&go);
    for (name, want) in contract.go_layout() {
        assert_eq!(
            constants.get(name).copied(),
            Some(want),
            "abi_wasm.go's `{name}` must be {want} (wasm32, computed from wit/)"
        );
    }
}

/// `name = N` lines of Go's const blocks.
fn go_constants(go: &str) -> std::collections::HashMap<&str, usize> {
    go.lines()
        .filter_map(|l| {
            let (name, rest) = l.trim().split_once('=')?;
            let value = rest.split("//").next()?.trim().parse().ok()?;
            Some((name.trim().trim_start_matches("const ").trim(), value))
        })
        .collect()
}

impl Contract {
    fn record_offsets(&self, name: &str) -> Vec<(String, usize)> {
        match &self.resolve.types[self.ty(name)].kind {
            TypeDefKind::Record(r) => {
                let offsets = self.sizes.field_offsets(r.fields.iter().map(|f| &f.ty));
                r.fields
                    .iter()
                    .zip(offsets)
                    .map(|(f, (o, _))| (f.name.clone(), o.size_wasm32()))
                    .collect()
            }
            other => panic!("{name} is not a record: {other:?}"),
        }
    }

    fn field(&self, record: &str, field: &str) -> usize {
        self.record_offsets(record)
            .into_iter()
            .find(|(n, _)| n == field)
            .unwrap_or_else(|| panic!("{record} has no field {field}"))
            .1
    }

    fn field_type(&self, record: &str, field: &str) -> Type {
        match &self.resolve.types[self.ty(record)].kind {
            TypeDefKind::Record(r) => r.fields.iter().find(|f| f.name == field).unwrap().ty,
            _ => unreachable!(),
        }
    }

    /// The payload offset of a `result`/`option`/`variant` type.
    fn payload(&self, ty: Type) -> usize {
        let Type::Id(id) = ty else {
            panic!("{ty:?} has no payload")
        };
        match &self.resolve.types[id].kind {
            TypeDefKind::Result(r) => self
                .sizes
                .payload_offset(wit_parser::Int::U8, [r.ok.as_ref(), r.err.as_ref()])
                .size_wasm32(),
            TypeDefKind::Option(t) => self
                .sizes
                .payload_offset(wit_parser::Int::U8, [None, Some(t)])
                .size_wasm32(),
            TypeDefKind::Variant(v) => self
                .sizes
                .payload_offset(v.tag(), v.cases.iter().map(|c| c.ty.as_ref()))
                .size_wasm32(),
            TypeDefKind::Type(t) => self.payload(*t),
            other => panic!("{other:?} has no payload"),
        }
    }

    /// Every offset Go's hand-written bindings read, by the name abi_wasm.go gives it.
    fn go_layout(&self) -> Vec<(&'static str, usize)> {
        let outcome = self.field("delivery-report", "outcome");
        let message = self.field("broker-error", "message");
        let publish = self.result_of("publish");
        let flush = self.result_of("flush");
        let header_value = self.field("header", "value");
        let (pair, pair_value) = self.config_pair();
        vec![
            ("deliveryReportSize", self.size("delivery-report")),
            (
                "deliveryReportTopic",
                self.field("delivery-report", "topic"),
            ),
            (
                "deliveryReportPartition",
                self.field("delivery-report", "partition"),
            ),
            ("deliveryReportOutcome", outcome),
            (
                "deliveryReportPayload",
                outcome + self.payload(self.field_type("delivery-report", "outcome")),
            ),
            (
                "produceErrorPayload",
                self.payload(Type::Id(self.ty("produce-error"))),
            ),
            ("brokerErrorCode", self.field("broker-error", "code")),
            ("brokerErrorMessage", message),
            (
                "brokerErrorMessageValue",
                message + self.payload(self.field_type("broker-error", "message")),
            ),
            ("publishResultSize", self.size_of(publish)),
            ("publishResultPayload", self.payload(publish)),
            ("receiptID", self.field("receipt", "id")),
            ("receiptPartition", self.field("receipt", "partition")),
            ("receiptOffset", self.field("receipt", "offset")),
            ("unitResultPayload", self.payload(flush)),
            ("headerSize", self.size("header")),
            ("headerValue", header_value),
            (
                "headerValuePayload",
                header_value + self.payload(self.field_type("header", "value")),
            ),
            ("configPairSize", self.size_of(pair)),
            ("configPairValue", pair_value),
        ]
    }

    /// The result type of `producer.func`.
    fn result_of(&self, func: &str) -> Type {
        let (_, producer) = self
            .resolve
            .interfaces
            .iter()
            .find(|(_, i)| i.name.as_deref() == Some("producer"))
            .expect("interface producer");
        producer.functions[func].result.expect("a result")
    }

    /// The element of `init`'s `list<tuple<string, string>>`, and its value's offset.
    fn config_pair(&self) -> (Type, usize) {
        let (_, world) = self
            .resolve
            .worlds
            .iter()
            .find(|(_, w)| w.name == "plugin")
            .expect("world plugin");
        let init = world
            .exports
            .iter()
            .find_map(|(k, item)| match (k, item) {
                (wit_parser::WorldKey::Name(n), wit_parser::WorldItem::Function(f))
                    if n == "init" =>
                {
                    Some(f)
                }
                _ => None,
            })
            .expect("export init");
        let Type::Id(list) = init.params[0].ty else {
            panic!("init takes a list")
        };
        let TypeDefKind::List(pair) = self.resolve.types[list].kind else {
            panic!("init takes a list")
        };
        let Type::Id(tuple) = pair else {
            panic!("a list of tuples")
        };
        let TypeDefKind::Tuple(t) = &self.resolve.types[tuple].kind else {
            panic!("a list of tuples")
        };
        let value = self.sizes.field_offsets(&t.types)[1].0.size_wasm32();
        (pair, value)
    }

    fn size_of(&self, ty: Type) -> usize {
        self.sizes.size(&ty).size_wasm32()
    }
}

/// The Rust SDK is packaged with its own copy of the contract (a crate cannot read files
/// outside itself once published): it must be the repository's `wit/`, byte for byte.
#[test]
fn the_rust_sdks_copy_of_the_contract_is_wit() {
    let names = |dir: &str| {
        let mut names: Vec<String> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".wit"))
            .collect();
        names.sort();
        names
    };
    let originals = names("wit");
    assert_eq!(names("guest-sdk/rust/wit"), originals, "the same files");
    for file in &originals {
        let original = std::fs::read(root().join("wit").join(file)).unwrap();
        let copy = std::fs::read(root().join("guest-sdk/rust/wit").join(file)).unwrap();
        assert!(
            original == copy,
            "guest-sdk/rust/wit/{file} differs from wit/{file}: copy it (cp wit/{file} guest-sdk/rust/wit/)"
        );
    }
}
