//! `cargo xtask tidy`: checks that keep the project's structure, in the manner of rust-analyzer's
//! tidy tests. They run with `cargo test` too (the tests at the bottom), so CI keeps them.
//!
//! - **Layers**: the host's modules in layers, bottom up ([`HOST_LAYERS`]). A file may use
//!   modules of its own layer or of lower ones, never of a higher one; no two top-level modules
//!   use each other, directly or round a ring; and inside a module no files form a ring (a
//!   parent using its own children does not count: that is how a module shows its parts).
//! - **Sizes**: no host file holds more than [`MAX_NON_TEST_LINES`] lines outside its tests.
//! - **Links**: every relative link and anchor in the project's Markdown files resolves.
//!
//! Paths are read with `syn`, so `use` trees, paths in code and `crate::` paths inside macro
//! calls all count; code under `#[cfg(test)]` does not.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// The host's layers, bottom up: each entry names a layer and the top-level modules in it. `""`
/// is the crate root (`lib.rs`); `main` is the binary (`main.rs`).
pub const HOST_LAYERS: &[(&str, &[&str])] = &[
    (
        "values and policy (no I/O)",
        &[
            "contract",
            "clock",
            "redaction",
            "terminal_text",
            "config",
            "metrics",
            "activity",
        ],
    ),
    ("store", &["store"]),
    (
        "edges",
        &["egress", "three_dolphins", "webhook_auth", "scheduler", "telemetry"],
    ),
    ("runtime", &["runtime"]),
    ("adapters", &["registry", "tenants", "deployments", "plugin_test"]),
    ("outbox and cluster", &["outbox", "cluster"]),
    ("server", &["server"]),
    (
        "entry points",
        &["cli", "deploy_client", "plugin_new", "plugin_run", "", "main"],
    ),
];

/// The most lines of non-test code one host file may hold.
pub const MAX_NON_TEST_LINES: usize = 800;

/// One parsed source file of a crate.
#[derive(Debug)]
pub struct SourceFile {
    /// Relative to the folder the crate was read from, e.g. `store/mod.rs`.
    pub path: PathBuf,
    /// The module the file holds, e.g. `["store"]`; empty for the crate root.
    pub module: Vec<String>,
    /// Lines outside `#[cfg(test)]` items.
    pub non_test_lines: usize,
    refs: Vec<Reference>,
}

/// A path in a file that names a module of the same crate.
#[derive(Debug, Clone)]
struct Reference {
    /// The absolute module path the reference names (possibly with an item at the end).
    target: Vec<String>,
    line: usize,
}

/// A broken rule, named with the file and line where that is one place.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Problem(pub String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a crate from `src`: `lib.rs` and, when present, `main.rs` (a binary that names the
/// library `lib_name`), following every `mod` declaration that is not under `#[cfg(test)]`.
pub fn read_crate(src: &Path, lib_name: &str) -> Result<Vec<SourceFile>> {
    let mut files = Vec::new();
    read_module_file(src, Path::new("lib.rs"), Vec::new(), None, &mut files)?;
    if src.join("main.rs").exists() {
        read_module_file(
            src,
            Path::new("main.rs"),
            vec!["main".into()],
            Some(lib_name),
            &mut files,
        )?;
    }
    Ok(files)
}

fn read_module_file(
    src: &Path,
    rel: &Path,
    module: Vec<String>,
    lib_alias: Option<&str>,
    files: &mut Vec<SourceFile>,
) -> Result<()> {
    let full = src.join(rel);
    let text = std::fs::read_to_string(&full).with_context(|| format!("cannot read {}", full.display()))?;
    let parsed = syn::parse_file(&text).with_context(|| format!("cannot parse {}", full.display()))?;
    let mut collector = Collector {
        file_module: if lib_alias.is_some() {
            Vec::new()
        } else {
            module.clone()
        },
        inline: Vec::new(),
        lib_alias,
        refs: Vec::new(),
        test_lines: BTreeSet::new(),
        children: Vec::new(),
    };
    collector.visit_file(&parsed);
    let total_lines = text.lines().count();
    let non_test_lines = total_lines - collector.test_lines.len().min(total_lines);
    let children = std::mem::take(&mut collector.children);
    files.push(SourceFile {
        path: rel.to_path_buf(),
        module: module.clone(),
        non_test_lines,
        refs: collector.refs,
    });
    // `mod x;` in lib.rs, main.rs or mod.rs lives beside it; elsewhere in a folder named after
    // the file.
    let file_name = rel.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let dir = match file_name {
        "lib.rs" | "main.rs" | "mod.rs" => rel.parent().unwrap_or(Path::new("")).to_path_buf(),
        _ => rel.with_extension(""),
    };
    for child in children {
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let child_rel = if src.join(&flat).exists() {
            flat
        } else if src.join(&nested).exists() {
            nested
        } else {
            bail!("{}: `mod {child};` names no file", rel.display());
        };
        let mut child_module = if lib_alias.is_some() {
            vec!["main".to_string()]
        } else {
            module.clone()
        };
        child_module.push(child);
        read_module_file(src, &child_rel, child_module, lib_alias, files)?;
    }
    Ok(())
}

/// Walks one file's syntax tree, gathering crate-local paths, test-only lines and out-of-line
/// child modules.
struct Collector<'a> {
    /// The file's module as paths in it resolve (`main.rs`'s own modules are not the library's).
    file_module: Vec<String>,
    /// Inline `mod x { ... }` blocks the visitor is inside.
    inline: Vec<String>,
    /// The library's name, when the file belongs to the binary.
    lib_alias: Option<&'a str>,
    refs: Vec<Reference>,
    test_lines: BTreeSet<usize>,
    children: Vec<String>,
}

impl Collector<'_> {
    fn current_module(&self) -> Vec<String> {
        let mut module = self.file_module.clone();
        module.extend(self.inline.iter().cloned());
        module
    }

    /// Resolves a path's segments to an absolute module path, when it names this crate.
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        if first == "crate" {
            if self.lib_alias.is_some() {
                return None; // the binary's own modules: not the library's layers
            }
            return Some(segments[1..].to_vec());
        }
        if Some(first.as_str()) == self.lib_alias {
            return Some(segments[1..].to_vec());
        }
        if first == "super" || first == "self" {
            if self.lib_alias.is_some() {
                return None;
            }
            let mut base = self.current_module();
            let mut rest = segments;
            while let Some(segment) = rest.first() {
                match segment.as_str() {
                    "super" => {
                        base.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                rest = &rest[1..];
            }
            base.extend(rest.iter().cloned());
            return Some(base);
        }
        None
    }

    fn record(&mut self, segments: &[String], line: usize) {
        if let Some(target) = self.resolve(segments) {
            self.refs.push(Reference { target, line });
        }
    }

    fn mark_test(&mut self, span: proc_macro2::Span, attrs: &[syn::Attribute]) {
        let start = attrs
            .iter()
            .map(|a| a.pound_token.span.start().line)
            .min()
            .unwrap_or(span.start().line)
            .min(span.start().line);
        self.test_lines.extend(start..=span.end().line);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                self.use_tree(prefix, &p.tree);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let mut path = prefix.clone();
                if n.ident != "self" {
                    path.push(n.ident.to_string());
                }
                self.record(&path, n.ident.span().start().line);
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.to_string());
                }
                self.record(&path, r.ident.span().start().line);
            }
            syn::UseTree::Glob(g) => self.record(&prefix.clone(), g.star_token.span.start().line),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    self.use_tree(prefix, item);
                }
            }
        }
    }

    /// `crate::a::b` (or `super::…`) inside a macro call's tokens.
    fn macro_tokens(&mut self, tokens: TokenStream) {
        let flat: Vec<TokenTree> = flatten(tokens);
        let mut i = 0;
        while i < flat.len() {
            if let TokenTree::Ident(ident) = &flat[i] {
                let name = ident.to_string();
                let starts_path = name == "crate" || name == "super" || Some(name.as_str()) == self.lib_alias;
                let preceded_by_colons = i >= 1 && matches!(&flat[i - 1], TokenTree::Punct(p) if p.as_char() == ':');
                if starts_path && !preceded_by_colons {
                    let line = ident.span().start().line;
                    let mut segments = vec![name];
                    let mut j = i + 1;
                    while j + 2 < flat.len() + 1 {
                        let colons = matches!(flat.get(j), Some(TokenTree::Punct(p)) if p.as_char() == ':')
                            && matches!(flat.get(j + 1), Some(TokenTree::Punct(p)) if p.as_char() == ':');
                        match (colons, flat.get(j + 2)) {
                            (true, Some(TokenTree::Ident(next))) => {
                                segments.push(next.to_string());
                                j += 3;
                            }
                            _ => break,
                        }
                    }
                    if segments.len() > 1 {
                        self.record(&segments, line);
                    }
                    i = j;
                    continue;
                }
            }
            i += 1;
        }
    }
}

fn flatten(tokens: TokenStream) -> Vec<TokenTree> {
    let mut out = Vec::new();
    for tree in tokens {
        match tree {
            TokenTree::Group(group) => out.extend(flatten(group.stream())),
            other => out.push(other),
        }
    }
    out
}

/// `#[cfg(test)]`, or a `cfg` that needs `test` (`any(test, …)` does not: it builds without).
fn is_test_only(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| {
        attr.path().is_ident("cfg")
            && attr
                .parse_args::<syn::Ident>()
                .map(|ident| ident == "test")
                .unwrap_or(false)
    })
}

fn item_attrs(item: &syn::Item) -> &[syn::Attribute] {
    match item {
        syn::Item::Const(i) => &i.attrs,
        syn::Item::Enum(i) => &i.attrs,
        syn::Item::ExternCrate(i) => &i.attrs,
        syn::Item::Fn(i) => &i.attrs,
        syn::Item::ForeignMod(i) => &i.attrs,
        syn::Item::Impl(i) => &i.attrs,
        syn::Item::Macro(i) => &i.attrs,
        syn::Item::Mod(i) => &i.attrs,
        syn::Item::Static(i) => &i.attrs,
        syn::Item::Struct(i) => &i.attrs,
        syn::Item::Trait(i) => &i.attrs,
        syn::Item::TraitAlias(i) => &i.attrs,
        syn::Item::Type(i) => &i.attrs,
        syn::Item::Union(i) => &i.attrs,
        syn::Item::Use(i) => &i.attrs,
        _ => &[],
    }
}

impl<'ast> Visit<'ast> for Collector<'_> {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let attrs = item_attrs(item);
        if is_test_only(attrs) {
            use syn::spanned::Spanned;
            self.mark_test(item.span(), attrs);
            return;
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, item: &'ast syn::ImplItemFn) {
        if is_test_only(&item.attrs) {
            use syn::spanned::Spanned;
            self.mark_test(item.span(), &item.attrs);
            return;
        }
        syn::visit::visit_impl_item_fn(self, item);
    }

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        match &item.content {
            None => self.children.push(item.ident.to_string()),
            Some((_, items)) => {
                self.inline.push(item.ident.to_string());
                for inner in items {
                    self.visit_item(inner);
                }
                self.inline.pop();
            }
        }
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let mut prefix = Vec::new();
        self.use_tree(&mut prefix, &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        if let Some(first) = path.segments.first() {
            self.record(&segments, first.ident.span().start().line);
        }
        syn::visit::visit_path(self, path);
    }

    /// `pub(crate)` and `pub(super)` name no module used.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.macro_tokens(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// A layering to check files against: each layer's name and modules, bottom up.
pub type Layers<'a> = &'a [(&'a str, &'a [&'a str])];

fn layer_of(layers: Layers<'_>, top: &str) -> Option<usize> {
    layers.iter().position(|(_, modules)| modules.contains(&top))
}

fn top_of(file: &SourceFile) -> &str {
    file.module.first().map(String::as_str).unwrap_or("")
}

/// The file holding the longest prefix of `target`.
fn file_of<'f>(files: &'f [SourceFile], target: &[String]) -> Option<&'f SourceFile> {
    files
        .iter()
        .filter(|f| f.module.first().map(String::as_str) != Some("main"))
        .filter(|f| target.starts_with(&f.module))
        .max_by_key(|f| f.module.len())
}

/// Every broken layering rule in `files`.
pub fn check_layers(files: &[SourceFile], layers: Layers<'_>) -> Vec<Problem> {
    let mut problems = BTreeSet::new();
    // Edges between files and between top-level modules, with one place each is made.
    let mut file_edges: BTreeMap<(PathBuf, PathBuf), usize> = BTreeMap::new();
    let mut module_edges: BTreeMap<(String, String), (PathBuf, usize)> = BTreeMap::new();
    for file in files {
        let from_top = top_of(file);
        let Some(from_layer) = layer_of(layers, from_top) else {
            problems.insert(Problem(format!(
                "{}: module `{from_top}` is in no layer: add it to the list of layers",
                file.path.display()
            )));
            continue;
        };
        for reference in &file.refs {
            let Some(target_file) = file_of(files, &reference.target) else {
                continue;
            };
            let to_top = top_of(target_file);
            if let Some(to_layer) = layer_of(layers, to_top)
                && to_layer > from_layer
            {
                problems.insert(Problem(format!(
                    "{}:{}: `{}` (layer {}, {}) uses `{}` of a higher layer ({}, {})",
                    file.path.display(),
                    reference.line,
                    display_module(&file.module),
                    from_layer + 1,
                    layers[from_layer].0,
                    display_module(&target_file.module),
                    to_layer + 1,
                    layers[to_layer].0,
                )));
            }
            if to_top != from_top {
                module_edges
                    .entry((from_top.to_string(), to_top.to_string()))
                    .or_insert((file.path.clone(), reference.line));
            } else if !target_file.module.starts_with(&file.module) {
                // Within a module; a parent using its descendants is not an edge.
                file_edges
                    .entry((file.path.clone(), target_file.path.clone()))
                    .or_insert(reference.line);
            }
        }
    }
    for ring in rings(module_edges.keys().cloned()) {
        let places: Vec<String> = shortest_cycle(&ring, &module_edges)
            .iter()
            .map(|(from, to)| {
                let (path, line) = &module_edges[&(from.clone(), to.clone())];
                format!("`{from}` -> `{to}` ({}:{line})", path.display())
            })
            .collect();
        problems.insert(Problem(format!(
            "modules use each other in a ring: {}",
            places.join(", ")
        )));
    }
    for ring in rings(file_edges.keys().cloned()) {
        let places: Vec<String> = shortest_cycle(&ring, &file_edges)
            .iter()
            .map(|(from, to)| {
                let line = file_edges[&(from.clone(), to.clone())];
                format!("{}:{line} uses {}", from.display(), to.display())
            })
            .collect();
        problems.insert(Problem(format!(
            "files use each other in a ring: {}",
            places.join("; ")
        )));
    }
    problems.into_iter().collect()
}

fn display_module(module: &[String]) -> String {
    if module.is_empty() {
        "crate".into()
    } else {
        module.join("::")
    }
}

/// The shortest cycle through the nodes of `ring` (a strongly connected component), as its edges.
fn shortest_cycle<N: Ord + Clone, V>(ring: &BTreeSet<N>, edges: &BTreeMap<(N, N), V>) -> Vec<(N, N)> {
    let inside: Vec<&(N, N)> = edges
        .keys()
        .filter(|(from, to)| ring.contains(from) && ring.contains(to))
        .collect();
    let mut best: Option<Vec<(N, N)>> = None;
    for start in ring {
        // Breadth-first from `start` back to itself.
        let mut previous: BTreeMap<N, N> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start.clone()]);
        let mut found = false;
        while let Some(node) = queue.pop_front() {
            for (_, to) in inside.iter().filter(|(from, _)| *from == node) {
                if to == start {
                    previous.insert(start.clone(), node.clone());
                    found = true;
                    break;
                }
                if !previous.contains_key(to) {
                    previous.insert(to.clone(), node.clone());
                    queue.push_back(to.clone());
                }
            }
            if found {
                break;
            }
        }
        if !found {
            continue;
        }
        let mut cycle = Vec::new();
        let mut node = start.clone();
        loop {
            let before = previous[&node].clone();
            cycle.push((before.clone(), node.clone()));
            node = before;
            if &node == start {
                break;
            }
        }
        cycle.reverse();
        if best.as_ref().is_none_or(|b| cycle.len() < b.len()) {
            best = Some(cycle);
        }
    }
    best.unwrap_or_default()
}

/// The strongly connected components of more than one node (Tarjan's algorithm).
fn rings<N: Ord + Clone>(edges: impl Iterator<Item = (N, N)>) -> Vec<BTreeSet<N>> {
    let mut graph: BTreeMap<N, Vec<N>> = BTreeMap::new();
    for (from, to) in edges {
        graph.entry(to.clone()).or_default();
        graph.entry(from).or_default().push(to);
    }
    struct State<N> {
        index: HashMap<usize, usize>,
        low: HashMap<usize, usize>,
        stack: Vec<usize>,
        on_stack: BTreeSet<usize>,
        next: usize,
        out: Vec<BTreeSet<N>>,
    }
    let nodes: Vec<N> = graph.keys().cloned().collect();
    let id = |n: &N| nodes.binary_search(n).expect("every node is a key");
    let adjacency: Vec<Vec<usize>> = nodes.iter().map(|n| graph[n].iter().map(id).collect()).collect();
    fn connect<N: Clone + Ord>(v: usize, adjacency: &[Vec<usize>], nodes: &[N], s: &mut State<N>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &adjacency[v] {
            if !s.index.contains_key(&w) {
                connect(w, adjacency, nodes, s);
                let low = s.low[&v].min(s.low[&w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(&w) {
                let low = s.low[&v].min(s.index[&w]);
                s.low.insert(v, low);
            }
        }
        if s.low[&v] == s.index[&v] {
            let mut component = BTreeSet::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(&w);
                component.insert(nodes[w].clone());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.out.push(component);
            }
        }
    }
    let mut state = State {
        index: HashMap::new(),
        low: HashMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in 0..nodes.len() {
        if !state.index.contains_key(&v) {
            connect(v, &adjacency, &nodes, &mut state);
        }
    }
    state.out
}

/// Files holding more than [`MAX_NON_TEST_LINES`] lines of non-test code.
pub fn check_sizes(files: &[SourceFile]) -> Vec<Problem> {
    files
        .iter()
        .filter(|f| f.non_test_lines > MAX_NON_TEST_LINES)
        .map(|f| {
            Problem(format!(
                "{}: {} lines of non-test code (at most {MAX_NON_TEST_LINES}): split it by concern",
                f.path.display(),
                f.non_test_lines
            ))
        })
        .collect()
}

/// The host's source folder.
pub fn host_src(root: &Path) -> PathBuf {
    root.join("host").join("src")
}

/// `cargo xtask tidy`: prints the layers, each host file's size, and every problem found.
pub fn run(root: &Path) -> Result<()> {
    let files = read_crate(&host_src(root), "dolphin_bridge")?;
    println!("Host layers, bottom up (a file uses its own layer and the ones below):");
    for (i, (name, modules)) in HOST_LAYERS.iter().enumerate() {
        let modules: Vec<&str> = modules
            .iter()
            .map(|m| if m.is_empty() { "lib.rs" } else { m })
            .collect();
        println!("  {}. {name}: {}", i + 1, modules.join(", "));
    }
    println!("\nNon-test lines per file (at most {MAX_NON_TEST_LINES}):");
    let mut sized: Vec<&SourceFile> = files.iter().collect();
    sized.sort_by_key(|f| std::cmp::Reverse(f.non_test_lines));
    for file in sized {
        println!("  {:>5}  host/src/{}", file.non_test_lines, file.path.display());
    }
    let mut problems = check_layers(&files, HOST_LAYERS);
    problems.extend(check_sizes(&files));
    problems.extend(crate::doc_links::check(root)?);
    if problems.is_empty() {
        println!("\ntidy: no problems");
        return Ok(());
    }
    println!();
    for problem in &problems {
        println!("{problem}");
    }
    bail!("{} problem(s)", problems.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workspace_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
    }

    fn assert_none(problems: Vec<Problem>) {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(listed.is_empty(), "\n{}\n", listed.join("\n"));
    }

    #[test]
    fn host_imports_only_go_down() {
        let files = read_crate(&host_src(&workspace_root()), "dolphin_bridge").unwrap();
        assert!(files.len() > 20, "read only {} files", files.len());
        assert_none(check_layers(&files, HOST_LAYERS));
    }

    #[test]
    fn host_files_hold_one_concern_each() {
        let files = read_crate(&host_src(&workspace_root()), "dolphin_bridge").unwrap();
        assert_none(check_sizes(&files));
    }

    /// A small crate on disk, to show the checks find what they claim to.
    fn sample_crate(files: &[(&str, &str)]) -> (PathBuf, Vec<SourceFile>) {
        let dir = std::env::temp_dir().join(format!(
            "xtask-tidy-{}-{}",
            std::process::id(),
            files.iter().map(|(p, _)| p.len()).sum::<usize>() + files.len() * 1000
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files {
            let full = dir.join(path);
            std::fs::create_dir_all(full.parent().unwrap()).unwrap();
            std::fs::write(full, text).unwrap();
        }
        let read = read_crate(&dir, "sample").unwrap();
        (dir, read)
    }

    const SAMPLE_LAYERS: Layers<'static> = &[("low", &["low", "also_low"]), ("high", &["high", "", "main"])];

    #[test]
    fn a_lower_layer_using_a_higher_one_is_named_with_its_line() {
        let (dir, files) = sample_crate(&[
            ("lib.rs", "pub mod low;\npub mod high;\n"),
            ("low.rs", "//! low\n\npub fn f() {\n    crate::high::g();\n}\n"),
            ("high.rs", "pub fn g() {}\n"),
        ]);
        let problems = check_layers(&files, SAMPLE_LAYERS);
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(
            problems,
            vec![Problem(
                "low.rs:4: `low` (layer 1, low) uses `high` of a higher layer (2, high)".into()
            )]
        );
    }

    #[test]
    fn sibling_files_using_each_other_are_a_ring_and_test_code_does_not_count() {
        let (dir, files) = sample_crate(&[
            ("lib.rs", "pub mod low;\n"),
            ("low/mod.rs", "mod a;\nmod b;\npub use a::A;\n"),
            ("low/a.rs", "pub struct A;\npub fn f() { super::b::g() }\n"),
            (
                "low/b.rs",
                "use super::{a::A};\npub fn g() {}\n#[cfg(test)]\nmod tests {\n    use crate::high::X;\n}\n",
            ),
        ]);
        let problems = check_layers(&files, SAMPLE_LAYERS);
        let b = files.iter().find(|f| f.path.ends_with("b.rs")).unwrap();
        assert_eq!(b.non_test_lines, 2);
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(
            problems,
            vec![Problem(
                "files use each other in a ring: low/a.rs:2 uses low/b.rs; low/b.rs:1 uses low/a.rs".into()
            )]
        );
    }

    #[test]
    fn modules_of_one_layer_in_a_ring_are_named() {
        let (dir, files) = sample_crate(&[
            ("lib.rs", "pub mod low;\npub mod also_low;\n"),
            ("low.rs", "pub fn f() { crate::also_low::g() }\n"),
            ("also_low.rs", "pub fn g() { println!(\"{}\", crate::low::f()) }\n"),
        ]);
        let problems = check_layers(&files, SAMPLE_LAYERS);
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(
            problems,
            vec![Problem(
                "modules use each other in a ring: `also_low` -> `low` (also_low.rs:1), `low` -> `also_low` (low.rs:1)"
                    .into()
            )]
        );
    }

    #[test]
    fn a_file_over_the_limit_is_named() {
        let long = "pub fn f() {}\n".repeat(MAX_NON_TEST_LINES + 1);
        let tests = format!("#[cfg(test)]\nmod tests {{\n{}}}\n", "fn t() {}\n".repeat(900));
        let (dir, files) = sample_crate(&[
            ("lib.rs", "pub mod low;\npub mod high;\n"),
            ("low.rs", &long),
            ("high.rs", &format!("pub fn g() {{}}\n{tests}")),
        ]);
        std::fs::remove_dir_all(dir).unwrap();
        assert_eq!(
            check_sizes(&files),
            vec![Problem(format!(
                "low.rs: {} lines of non-test code (at most {MAX_NON_TEST_LINES}): split it by concern",
                MAX_NON_TEST_LINES + 1
            ))]
        );
    }
}
