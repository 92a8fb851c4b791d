//! `dolphin-bridge plugin new --lang rust|python|js NAME`: writes a new adapter project from the
//! templates under `plugin-sdk/templates/` (embedded in the binary): an adapter that posts each
//! customer message to a vendor URL and maps the vendor's webhook into 3Dolphins events, fixtures
//! that `plugin test` passes, a tenant snippet for `dolphin-bridge.toml`, a README and a
//! one-command build. Python and JavaScript projects get a copy of the WIT and of their SDK, so
//! they build anywhere; a Rust project depends on the SDK crate by path.
//!
//! In template files `{{name}}`, `{{crate_name}}`, `{{wasm_file}}`, `{{wasm_path}}`,
//! `{{sdk_path}}` and the pinned toolchain versions are replaced; the copied SDK and WIT files are
//! written as they are.

use std::io;
use std::path::{Component, Path, PathBuf};

/// The componentize-py version Python adapters are built with (as in the repository's build).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The componentize-js version JavaScript adapters are built with (as in the repository's build).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// The language of a new adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
}

/// What `plugin new` is asked to do.
#[derive(Debug, Clone)]
pub struct Options {
    /// The template's language.
    pub language: Language,
    /// The adapter's name (also the Cargo or npm package name).
    pub name: String,
    /// Where to write the project; `./NAME` when unset.
    pub dir: Option<PathBuf>,
    /// Rust only: the SDK crate's folder; found by walking up from the project folder when unset.
    pub sdk: Option<PathBuf>,
}

/// Why no project was written.
#[derive(Debug, thiserror::Error)]
pub enum NewError {
    /// The name cannot be a package name.
    #[error(
        "`{0}` is not a valid adapter name: use lowercase letters, digits and `-`, starting with a letter (at most 64)"
    )]
    InvalidName(String),
    /// The target folder holds something already.
    #[error("{} already exists and is not an empty folder; pass another --dir or remove it", .0.display())]
    NotEmpty(PathBuf),
    /// No `plugin-sdk/Cargo.toml` above the project folder.
    #[error(
        "no dolphin-bridge SDK (plugin-sdk/Cargo.toml) in {} or any folder above it; pass --sdk PATH, the plugin-sdk folder of a dolphin-bridge checkout",
        .0.display()
    )]
    SdkNotFound(PathBuf),
    /// `--sdk` does not point at the SDK crate.
    #[error("--sdk {}: no Cargo.toml of the dolphin-bridge-sdk crate there", .0.display())]
    NotTheSdk(PathBuf),
    /// `--sdk` given for a language that does not use it.
    #[error("--sdk applies to --lang rust only")]
    SdkNotUsed,
    /// Reading or writing a file failed.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The failure.
        source: io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> NewError + '_ {
    move |source| NewError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A project `plugin new` wrote.
#[derive(Debug, Clone)]
pub struct Created {
    /// The project folder.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<PathBuf>,
    /// The command that builds the component, run in `dir`.
    pub build: String,
    /// The component the build writes, relative to `dir`.
    pub component: String,
}

impl Created {
    /// The `plugin test` command for the built component, run in `dir`.
    pub fn test_command(&self) -> String {
        format!("dolphin-bridge plugin test {} --fixtures fixtures", self.component)
    }
}

/// How a template file becomes a project file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Placeholders replaced.
    Template,
    /// Placeholders replaced, and executable.
    Script,
    /// Written as it is (the SDK and the WIT).
    Copy,
}

/// One file of a template: its path in the project, its text and how it is written.
#[derive(Debug, Clone, Copy)]
struct TemplateFile {
    path: &'static str,
    text: &'static str,
    kind: Kind,
}

const fn file(path: &'static str, text: &'static str, kind: Kind) -> TemplateFile {
    TemplateFile { path, text, kind }
}

const WIT: TemplateFile = file("wit/adapter.wit", include_str!("../../wit/adapter.wit"), Kind::Copy);

/// The files every project gets.
const COMMON: &[TemplateFile] = &[
    file(
        "fixtures/tenant.toml",
        include_str!("../../plugin-sdk/templates/common/fixtures/tenant.toml"),
        Kind::Template,
    ),
    file(
        "fixtures/vendor.json",
        include_str!("../../plugin-sdk/templates/common/fixtures/vendor.json"),
        Kind::Template,
    ),
    file(
        "fixtures/incoming/01-customer-message.json",
        include_str!("../../plugin-sdk/templates/common/fixtures/incoming/01-customer-message.json"),
        Kind::Template,
    ),
    file(
        "fixtures/webhooks/02-agent-reply.json",
        include_str!("../../plugin-sdk/templates/common/fixtures/webhooks/02-agent-reply.json"),
        Kind::Template,
    ),
    file(
        "fixtures/webhooks/03-closed.json",
        include_str!("../../plugin-sdk/templates/common/fixtures/webhooks/03-closed.json"),
        Kind::Template,
    ),
    file(
        "fixtures/webhooks/04-unknown-body.fails.json",
        include_str!("../../plugin-sdk/templates/common/fixtures/webhooks/04-unknown-body.fails.json"),
        Kind::Template,
    ),
    file(
        "tenant.toml.example",
        include_str!("../../plugin-sdk/templates/common/tenant.toml.example"),
        Kind::Template,
    ),
];

const RUST: &[TemplateFile] = &[
    file(
        "Cargo.toml",
        include_str!("../../plugin-sdk/templates/rust/Cargo.toml.template"),
        Kind::Template,
    ),
    file(
        "src/lib.rs",
        include_str!("../../plugin-sdk/templates/rust/src/lib.rs"),
        Kind::Template,
    ),
    file(
        "README.md",
        include_str!("../../plugin-sdk/templates/rust/README.md"),
        Kind::Template,
    ),
    file(
        ".gitignore",
        include_str!("../../plugin-sdk/templates/rust/gitignore"),
        Kind::Template,
    ),
];

const PYTHON: &[TemplateFile] = &[
    file(
        "app.py",
        include_str!("../../plugin-sdk/templates/python/app.py"),
        Kind::Template,
    ),
    file(
        "build.sh",
        include_str!("../../plugin-sdk/templates/python/build.sh"),
        Kind::Script,
    ),
    file(
        "README.md",
        include_str!("../../plugin-sdk/templates/python/README.md"),
        Kind::Template,
    ),
    file(
        ".gitignore",
        include_str!("../../plugin-sdk/templates/python/gitignore"),
        Kind::Template,
    ),
    file(
        "dolphin_bridge_sdk.py",
        include_str!("../../plugin-sdk/python/dolphin_bridge_sdk.py"),
        Kind::Copy,
    ),
    WIT,
];

const JS: &[TemplateFile] = &[
    file(
        "adapter.js",
        include_str!("../../plugin-sdk/templates/js/adapter.js"),
        Kind::Template,
    ),
    file(
        "build.mjs",
        include_str!("../../plugin-sdk/templates/js/build.mjs"),
        Kind::Template,
    ),
    file(
        "package.json",
        include_str!("../../plugin-sdk/templates/js/package.json"),
        Kind::Template,
    ),
    file(
        "README.md",
        include_str!("../../plugin-sdk/templates/js/README.md"),
        Kind::Template,
    ),
    file(
        ".gitignore",
        include_str!("../../plugin-sdk/templates/js/gitignore"),
        Kind::Template,
    ),
    file("sdk.js", include_str!("../../plugin-sdk/js/sdk.js"), Kind::Copy),
    WIT,
];

impl Language {
    /// The language's own template files (the common ones come on top).
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Language::Rust => RUST,
            Language::Python => PYTHON,
            Language::Js => JS,
        }
    }

    /// The command that builds a project, run in its folder.
    fn build_command(self) -> &'static str {
        match self {
            Language::Rust => "cargo build --profile adapter --target wasm32-wasip2",
            Language::Python => "./build.sh",
            Language::Js => "npm install && node build.mjs",
        }
    }

    /// The component the build writes, relative to the project folder.
    fn component(self, crate_name: &str) -> String {
        match self {
            Language::Rust => format!("target/wasm32-wasip2/adapter/{crate_name}.wasm"),
            Language::Python | Language::Js => format!("{crate_name}.wasm"),
        }
    }
}

/// Whether `name` can name an adapter: a Cargo and npm package name and a folder name.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

/// The placeholders' values for one project.
struct Values {
    pairs: Vec<(&'static str, String)>,
}

impl Values {
    fn render(&self, text: &str) -> String {
        self.pairs.iter().fold(text.to_owned(), |text, (key, value)| {
            text.replace(&format!("{{{{{key}}}}}"), value)
        })
    }
}

/// Writes the project `options` describe.
pub fn create(options: &Options) -> Result<Created, NewError> {
    let name = options.name.as_str();
    if !valid_name(name) {
        return Err(NewError::InvalidName(name.to_owned()));
    }
    if options.sdk.is_some() && options.language != Language::Rust {
        return Err(NewError::SdkNotUsed);
    }
    let dir = options.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    ensure_empty(&dir)?;
    std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    let sdk_path = match options.language {
        Language::Rust => match sdk_path(&dir, options.sdk.as_deref()) {
            Ok(path) => path,
            Err(e) => {
                // Leave nothing behind: the folder was missing or empty.
                let _ = std::fs::remove_dir(&dir);
                return Err(e);
            }
        },
        Language::Python | Language::Js => String::new(),
    };
    let crate_name = name.replace('-', "_");
    let component = options.language.component(&crate_name);
    let values = Values {
        pairs: vec![
            ("name", name.to_owned()),
            ("crate_name", crate_name.clone()),
            ("wasm_file", format!("{crate_name}.wasm")),
            ("wasm_path", component.clone()),
            ("sdk_path", sdk_path),
            ("componentize_py_version", COMPONENTIZE_PY_VERSION.to_owned()),
            ("componentize_js_version", COMPONENTIZE_JS_VERSION.to_owned()),
        ],
    };
    let mut files = Vec::new();
    for template in options.language.files().iter().chain(COMMON) {
        let path = dir.join(template.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        let text = match template.kind {
            Kind::Copy => template.text.to_owned(),
            Kind::Template | Kind::Script => values.render(template.text),
        };
        std::fs::write(&path, text).map_err(io_error(&path))?;
        if template.kind == Kind::Script {
            make_executable(&path)?;
        }
        files.push(PathBuf::from(template.path));
    }
    Ok(Created {
        dir,
        files,
        build: options.language.build_command().to_owned(),
        component,
    })
}

/// Fails unless `dir` is missing or an empty folder.
fn ensure_empty(dir: &Path) -> Result<(), NewError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => match entries.next() {
            None => Ok(()),
            Some(_) => Err(NewError::NotEmpty(dir.to_path_buf())),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(_) if dir.exists() => Err(NewError::NotEmpty(dir.to_path_buf())),
        Err(e) => Err(NewError::Io {
            path: dir.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(unix)]
fn make_executable(path: &Path) -> Result<(), NewError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(io_error(path))
}

#[cfg(not(unix))]
fn make_executable(_path: &Path) -> Result<(), NewError> {
    Ok(())
}

/// The SDK crate's path as the project's `Cargo.toml` names it: `--sdk` made absolute, or
/// relative (`../../plugin-sdk`) to the nearest `plugin-sdk/Cargo.toml` above the project.
fn sdk_path(dir: &Path, given: Option<&Path>) -> Result<String, NewError> {
    let dir = std::fs::canonicalize(dir).map_err(io_error(dir))?;
    if let Some(given) = given {
        let sdk = std::fs::canonicalize(given).map_err(|_| NewError::NotTheSdk(given.to_path_buf()))?;
        if !is_sdk(&sdk) {
            return Err(NewError::NotTheSdk(given.to_path_buf()));
        }
        return Ok(toml_path(&sdk));
    }
    for (ups, ancestor) in dir.ancestors().enumerate() {
        let sdk = ancestor.join("plugin-sdk");
        if is_sdk(&sdk) {
            let mut relative: PathBuf = std::iter::repeat_n(Component::ParentDir, ups).collect();
            relative.push("plugin-sdk");
            return Ok(toml_path(&relative));
        }
    }
    Err(NewError::SdkNotFound(dir))
}

/// Whether `dir` holds the `dolphin-bridge-sdk` crate.
fn is_sdk(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml"))
        .is_ok_and(|manifest| manifest.contains("name = \"dolphin-bridge-sdk\""))
}

/// A path as written inside a TOML basic string: `/` separators, `\` and `"` escaped.
fn toml_path(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh folder under the system temp folder, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new() -> Self {
            let dir = std::env::temp_dir().join(format!("dolphin-plugin-new-{}", uuid::Uuid::now_v7()));
            std::fs::create_dir_all(&dir).unwrap();
            Scratch(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn all_templates() -> impl Iterator<Item = (Language, &'static TemplateFile)> {
        [Language::Rust, Language::Python, Language::Js]
            .into_iter()
            .flat_map(|language| language.files().iter().chain(COMMON).map(move |f| (language, f)))
    }

    fn options(language: Language, dir: &Path) -> Options {
        Options {
            language,
            name: "acme-chat".into(),
            dir: Some(dir.to_path_buf()),
            sdk: None,
        }
    }

    #[test]
    fn every_template_renders_without_leftover_placeholders() {
        let values = Values {
            pairs: vec![
                ("name", "acme-chat".into()),
                ("crate_name", "acme_chat".into()),
                ("wasm_file", "acme_chat.wasm".into()),
                ("wasm_path", "acme_chat.wasm".into()),
                ("sdk_path", "../plugin-sdk".into()),
                ("componentize_py_version", COMPONENTIZE_PY_VERSION.into()),
                ("componentize_js_version", COMPONENTIZE_JS_VERSION.into()),
            ],
        };
        for (language, template) in all_templates() {
            let text = match template.kind {
                Kind::Copy => template.text.to_owned(),
                Kind::Template | Kind::Script => values.render(template.text),
            };
            assert!(
                !text.contains("{{"),
                "{language:?} {}: a placeholder is left:\n{text}",
                template.path
            );
        }
    }

    #[test]
    fn the_pinned_toolchains_are_those_the_repository_builds_with() {
        let xtask = include_str!("../../xtask/src/main.rs");
        assert!(
            xtask.contains(&format!("\"componentize-py=={COMPONENTIZE_PY_VERSION}\"")),
            "xtask's componentize-py differs from {COMPONENTIZE_PY_VERSION}"
        );
        let package = include_str!("../../plugins/echo-js/package.json");
        assert!(
            package.contains(&format!(
                "\"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS_VERSION}\""
            )),
            "echo-js's componentize-js differs from {COMPONENTIZE_JS_VERSION}"
        );
    }

    #[test]
    fn names_that_cannot_be_package_names_are_refused() {
        for name in ["acme", "acme-chat", "a1"] {
            assert!(valid_name(name), "{name}");
        }
        for name in [
            "",
            "Acme",
            "1acme",
            "acme_chat",
            "acme-",
            "ac me",
            "../x",
            &"a".repeat(65),
        ] {
            assert!(!valid_name(name), "{name}");
        }
        let dir = Scratch::new();
        let mut bad = options(Language::Js, &dir.path().join("x"));
        bad.name = "../evil".into();
        assert!(matches!(create(&bad), Err(NewError::InvalidName(_))));
        assert!(!dir.path().join("x").exists());
    }

    #[test]
    fn a_folder_with_something_in_it_is_not_overwritten() {
        let dir = Scratch::new();
        std::fs::write(dir.path().join("keep.txt"), "mine").unwrap();
        let error = create(&options(Language::Python, dir.path())).unwrap_err();
        assert!(matches!(error, NewError::NotEmpty(_)), "{error}");
        assert_eq!(std::fs::read_to_string(dir.path().join("keep.txt")).unwrap(), "mine");
        assert!(!dir.path().join("app.py").exists());
        let file = dir.path().join("keep.txt");
        assert!(matches!(
            create(&options(Language::Js, &file)),
            Err(NewError::NotEmpty(_))
        ));
    }

    #[test]
    fn a_python_project_gets_its_sdk_wit_and_an_executable_build_script() {
        let dir = Scratch::new();
        let project = dir.path().join("acme-chat");
        let created = create(&options(Language::Python, &project)).unwrap();
        assert_eq!(created.component, "acme_chat.wasm");
        for file in [
            "app.py",
            "build.sh",
            "dolphin_bridge_sdk.py",
            "wit/adapter.wit",
            "fixtures/tenant.toml",
        ] {
            assert!(project.join(file).is_file(), "{file}");
            assert!(created.files.contains(&PathBuf::from(file)), "{file}");
        }
        let build = std::fs::read_to_string(project.join("build.sh")).unwrap();
        assert!(build.contains("-o acme_chat.wasm"), "{build}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(project.join("build.sh"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o111, 0o111, "build.sh is executable");
        }
    }

    #[test]
    fn a_rust_project_finds_the_sdk_above_it_or_asks_for_it() {
        let root = Scratch::new();
        let sdk = root.path().join("plugin-sdk");
        std::fs::create_dir_all(&sdk).unwrap();
        std::fs::write(sdk.join("Cargo.toml"), "[package]\nname = \"dolphin-bridge-sdk\"\n").unwrap();
        let project = root.path().join("plugins").join("acme-chat");
        create(&options(Language::Rust, &project)).unwrap();
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains("dolphin-bridge-sdk = { path = \"../../plugin-sdk\" }"),
            "{manifest}"
        );
        assert!(manifest.contains("name = \"acme-chat\""), "{manifest}");

        let elsewhere = Scratch::new();
        let lost = elsewhere.path().join("acme-chat");
        let error = create(&options(Language::Rust, &lost)).unwrap_err();
        assert!(matches!(error, NewError::SdkNotFound(_)), "{error}");
        assert!(error.to_string().contains("--sdk"), "{error}");
        assert!(!lost.exists(), "nothing is left behind");

        let mut given = options(Language::Rust, &lost);
        given.sdk = Some(sdk.clone());
        create(&given).unwrap();
        let manifest = std::fs::read_to_string(lost.join("Cargo.toml")).unwrap();
        let absolute = toml_path(&std::fs::canonicalize(&sdk).unwrap());
        assert!(manifest.contains(&format!("path = \"{absolute}\"")), "{manifest}");

        let mut wrong = options(Language::Rust, &elsewhere.path().join("other"));
        wrong.sdk = Some(elsewhere.path().to_path_buf());
        assert!(matches!(create(&wrong), Err(NewError::NotTheSdk(_))));
    }
}
