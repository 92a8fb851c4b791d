//! Relative links in the project's Markdown files: each must name a file that exists and, with a
//! `#anchor`, a heading of that file (anchors as GitHub makes them from headings).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use pulldown_cmark::{Event, HeadingLevel, Parser, Tag, TagEnd};

use crate::tidy::Problem;

/// Folders never searched for Markdown files.
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", ".git", ".venv", "__pycache__"];

/// Every broken relative link or anchor in the Markdown files under `root`.
pub fn check(root: &Path) -> Result<Vec<Problem>> {
    let mut files = Vec::new();
    markdown_files(root, &mut files)?;
    files.sort();
    let mut anchors: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
        let shown = file.strip_prefix(root).unwrap_or(file).display().to_string();
        for (dest, line) in links(&text) {
            if let Some(problem) = check_link(file, &dest, &mut anchors)? {
                problems.push(Problem(format!("{shown}:{line}: link `{dest}`: {problem}")));
            }
        }
    }
    Ok(problems)
}

fn markdown_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if entry.file_type()?.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                markdown_files(&path, out)?;
            }
        } else if name.ends_with(".md") {
            out.push(path);
        }
    }
    Ok(())
}

/// Each link or image destination in `text` with its line.
fn links(text: &str) -> Vec<(String, usize)> {
    let mut out = Vec::new();
    for (event, range) in Parser::new(text).into_offset_iter() {
        let dest = match event {
            Event::Start(Tag::Link { dest_url, .. }) | Event::Start(Tag::Image { dest_url, .. }) => dest_url,
            _ => continue,
        };
        let line = text[..range.start].matches('\n').count() + 1;
        out.push((dest.to_string(), line));
    }
    out
}

/// Why a link from `from` does not resolve, or `None` when it does.
fn check_link(from: &Path, dest: &str, anchors: &mut HashMap<PathBuf, BTreeSet<String>>) -> Result<Option<String>> {
    if dest.contains("://") || dest.starts_with("mailto:") {
        return Ok(None);
    }
    let (path_part, anchor) = match dest.split_once('#') {
        Some((path, anchor)) => (path, Some(anchor)),
        None => (dest, None),
    };
    let target = if path_part.is_empty() {
        from.to_path_buf()
    } else {
        from.parent().unwrap_or(Path::new("")).join(path_part)
    };
    if !target.exists() {
        return Ok(Some(format!("no file {}", path_part)));
    }
    let Some(anchor) = anchor else { return Ok(None) };
    if target.extension().and_then(|e| e.to_str()) != Some("md") {
        return Ok(None);
    }
    let known = match anchors.get(&target) {
        Some(known) => known,
        None => {
            let text = std::fs::read_to_string(&target).with_context(|| format!("cannot read {}", target.display()))?;
            anchors.entry(target.clone()).or_insert(heading_anchors(&text))
        }
    };
    if known.contains(anchor) {
        Ok(None)
    } else {
        Ok(Some(format!("no heading makes the anchor #{anchor}")))
    }
}

/// The anchors GitHub gives the headings of a Markdown text: lower case, punctuation other than
/// `-` and `_` dropped, spaces made `-`, and `-1`, `-2`… after repeats.
pub fn heading_anchors(text: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut heading: Option<String> = None;
    for event in Parser::new(text) {
        match event {
            Event::Start(Tag::Heading { level, .. }) if level <= HeadingLevel::H6 => heading = Some(String::new()),
            Event::Text(t) | Event::Code(t) if heading.is_some() => {
                heading.as_mut().expect("inside a heading").push_str(&t)
            }
            Event::End(TagEnd::Heading(_)) => {
                let title = heading.take().unwrap_or_default();
                let slug: String = title
                    .trim()
                    .to_lowercase()
                    .chars()
                    .filter_map(|c| match c {
                        ' ' => Some('-'),
                        c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                        _ => None,
                    })
                    .collect();
                let count = seen.entry(slug.clone()).or_insert(0);
                let anchor = if *count == 0 {
                    slug.clone()
                } else {
                    format!("{slug}-{count}")
                };
                *count += 1;
                out.insert(anchor);
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchors_follow_githubs_rules() {
        let anchors = heading_anchors("# Quick start\n## The `[store]` section\n## Quick start\n### A/B: C & d\n");
        let expected: BTreeSet<String> = ["quick-start", "the-store-section", "quick-start-1", "ab-c--d"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(anchors, expected);
    }

    #[test]
    fn every_relative_link_and_anchor_in_the_project_resolves() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let problems = check(root).unwrap();
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert!(listed.is_empty(), "\n{}\n", listed.join("\n"));
    }

    #[test]
    fn a_missing_file_or_anchor_is_named_with_its_line() {
        let dir = std::env::temp_dir().join(format!("xtask-links-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        std::fs::write(dir.join("docs/a.md"), "# Title\n\n## Part two\n").unwrap();
        std::fs::write(
            dir.join("README.md"),
            "# R\n\n[ok](docs/a.md#part-two) [web](https://example.org/x)\n\n[bad](docs/a.md#part-3)\n[gone](docs/b.md)\n[here](#r)\n",
        )
        .unwrap();
        let problems = check(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            problems,
            vec![
                Problem("README.md:5: link `docs/a.md#part-3`: no heading makes the anchor #part-3".into()),
                Problem("README.md:6: link `docs/b.md`: no file docs/b.md".into()),
            ]
        );
    }
}
