//! `dolphin-bridge plugin new --lang rust|python|js NAME`: writes a new adapter project from the
//! templates under `plugin-sdk/templates/` (embedded in the binary): an adapter that posts each
//! customer message to a vendor URL and maps the vendor's webhook into 3Dolphins events, fixtures
//! that `plugin test` passes, a tenant snippet for `dolphin-bridge.toml`, a README and a
//! one-command build. Python and JavaScript projects get a copy of the WIT and of their SDK, so
//! they build anywhere; a Rust project depends on the SDK crate by path: the one `--sdk` names, or
//! that of the workspace the binary was built from, never one found near the project folder (a
//! `plugin-sdk/` planted in a shared folder would run its build script as whoever builds).
//!
//! The project folder must be missing, or an empty folder of the user's that is not a symbolic
//! link; files and folders are created new, so nothing is written through a link planted in it.
//!
//! In template files `{{name}}`, `{{crate_name}}`, `{{wasm_file}}`, `{{wasm_path}}`,
//! `{{sdk_path}}` and the pinned toolchain versions are replaced; the copied SDK and WIT files are
//! written as they are.

use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

/// The componentize-py version Python adapters are built with (as in the repository's build).
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";
/// The mypy version a Python project's build type-checks with (as the repository's build installs).
pub const MYPY_VERSION: &str = "1.13.0";
/// The componentize-js version JavaScript adapters are built with (as in the repository's build).
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";
/// The TypeScript version a JavaScript project's build type-checks with (as `echo-js` installs).
pub const TYPESCRIPT_VERSION: &str = "5.9.3";

/// The SDK crate of the workspace this binary was built from.
const WORKSPACE_SDK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../plugin-sdk");

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
    /// A `plugin-sdk` folder to take the SDK from: for Rust the crate the project depends on
    /// (the workspace's the binary was built from when unset); for Python and JavaScript the SDK
    /// file copied into the project (`python/dolphin_bridge_sdk.py`, `js/sdk.js`; the one built
    /// into the binary when unset).
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
    /// No `--sdk`, and the workspace this binary was built from is not here.
    #[error(
        "no dolphin-bridge SDK at {}, where this binary was built; pass --sdk PATH, the plugin-sdk folder of a dolphin-bridge checkout",
        .0.display()
    )]
    SdkNotFound(PathBuf),
    /// The target folder is a symbolic link.
    #[error("{} is a symbolic link; pass the folder it points to as --dir", .0.display())]
    Symlink(PathBuf),
    /// `--sdk` does not point at the SDK crate.
    #[error("--sdk {}: no Cargo.toml of the dolphin-bridge-sdk crate there", .0.display())]
    NotTheSdk(PathBuf),
    /// The target folder exists and belongs to another user.
    #[error("{} belongs to another user; pass a --dir of your own", .0.display())]
    NotOwned(PathBuf),
    /// `--sdk` has no SDK file for the project's language.
    #[error("--sdk {}: no {} there (pass the plugin-sdk folder of a dolphin-bridge checkout)", .0.display(), .1)]
    NoLanguageSdk(PathBuf, &'static str),
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
    /// The `plugin test` command for the built component, run where `plugin new` was run, with
    /// `program` (the bridge as it was invoked) in front.
    pub fn test_command_from_here(&self, program: &str) -> String {
        format!(
            "{program} plugin test {} --fixtures {}",
            self.dir.join(&self.component).display(),
            self.dir.join("fixtures").display()
        )
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
    file(
        "dolphin_bridge_sdk.pyi",
        include_str!("../../plugin-sdk/python/dolphin_bridge_sdk.pyi"),
        Kind::Copy,
    ),
    file(
        "dolphin_bridge_urllib.py",
        include_str!("../../plugin-sdk/python/dolphin_bridge_urllib.py"),
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
    file("join.mjs", include_str!("../../plugin-sdk/js/join.mjs"), Kind::Copy),
    file("sdk.d.ts", include_str!("../../plugin-sdk/js/sdk.d.ts"), Kind::Copy),
    file(
        "tsconfig.json",
        include_str!("../../plugin-sdk/templates/js/tsconfig.json"),
        Kind::Copy,
    ),
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

    /// Python and JavaScript: the SDK file in a `plugin-sdk` folder, and where the project
    /// keeps its copy.
    fn sdk_file(self) -> Option<(&'static str, &'static str)> {
        match self {
            Language::Rust => None,
            Language::Python => Some(("python/dolphin_bridge_sdk.py", "dolphin_bridge_sdk.py")),
            Language::Js => Some(("js/sdk.js", "sdk.js")),
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
    // Read before anything is written: a wrong --sdk leaves no half-made project.
    let sdk_file = match (options.language.sdk_file(), &options.sdk) {
        (Some((in_sdk, in_project)), Some(sdk)) => {
            let text =
                std::fs::read_to_string(sdk.join(in_sdk)).map_err(|_| NewError::NoLanguageSdk(sdk.clone(), in_sdk))?;
            Some((in_project, text))
        }
        _ => None,
    };
    let dir = options.dir.clone().unwrap_or_else(|| PathBuf::from(name));
    ensure_usable(&dir)?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(io_error(&dir)(e)),
        _ => {}
    }
    // Again: something may have taken the name between the first look and the creation.
    ensure_usable(&dir)?;
    let sdk_path = match options.language {
        Language::Rust => match sdk_path(&dir, options.sdk.as_deref(), Path::new(WORKSPACE_SDK)) {
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
            ("mypy_version", MYPY_VERSION.to_owned()),
            ("componentize_js_version", COMPONENTIZE_JS_VERSION.to_owned()),
            ("typescript_version", TYPESCRIPT_VERSION.to_owned()),
        ],
    };
    let files = write_files(
        &dir,
        options.language.files().iter().chain(COMMON),
        &values,
        sdk_file.as_ref().map(|(path, text)| (*path, text.as_str())),
    )?;
    Ok(Created {
        dir,
        files,
        build: options.language.build_command().to_owned(),
        component,
    })
}

/// Writes `templates` under `dir`, each file and folder created new (an existing entry, a symbolic
/// link above all, is an error), the one at `replaced.0` with the text `replaced.1` instead;
/// returns their paths relative to `dir`.
fn write_files<'a>(
    dir: &Path,
    templates: impl Iterator<Item = &'a TemplateFile>,
    values: &Values,
    replaced: Option<(&str, &str)>,
) -> Result<Vec<PathBuf>, NewError> {
    let mut files = Vec::new();
    for template in templates {
        let relative = Path::new(template.path);
        if let Some(parent) = relative.parent() {
            create_folders(dir, parent)?;
        }
        let path = dir.join(relative);
        let text = match (template.kind, replaced) {
            (_, Some((path, text))) if path == template.path => text.to_owned(),
            (Kind::Copy, _) => template.text.to_owned(),
            (Kind::Template | Kind::Script, _) => values.render(template.text),
        };
        // `create_new` fails on any existing entry, a symbolic link (even a dangling one) included.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_error(&path))?;
        file.write_all(text.as_bytes()).map_err(io_error(&path))?;
        if template.kind == Kind::Script {
            file.set_permissions(std::fs::Permissions::from_mode(0o755))
                .map_err(io_error(&path))?;
        }
        files.push(relative.to_path_buf());
    }
    Ok(files)
}

/// Creates each folder of `relative` under `dir` that is missing; one that exists must be a real
/// folder (not a symbolic link).
fn create_folders(dir: &Path, relative: &Path) -> Result<(), NewError> {
    let mut path = dir.to_path_buf();
    for component in relative.components() {
        path.push(component);
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let real_folder = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_dir());
                if !real_folder {
                    return Err(io_error(&path)(e));
                }
            }
            Err(e) => return Err(io_error(&path)(e)),
        }
    }
    Ok(())
}

/// Fails unless `dir` is missing, or an empty folder of the current user's that is not a symbolic
/// link.
fn ensure_usable(dir: &Path) -> Result<(), NewError> {
    let metadata = match std::fs::symlink_metadata(dir) {
        Ok(metadata) => metadata,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(dir)(e)),
    };
    if metadata.file_type().is_symlink() {
        return Err(NewError::Symlink(dir.to_path_buf()));
    }
    // SAFETY: getuid has no preconditions and cannot fail.
    if metadata.uid() != unsafe { libc::getuid() } {
        return Err(NewError::NotOwned(dir.to_path_buf()));
    }
    if !metadata.is_dir() {
        return Err(NewError::NotEmpty(dir.to_path_buf()));
    }
    match std::fs::read_dir(dir).map_err(io_error(dir))?.next() {
        None => Ok(()),
        Some(_) => Err(NewError::NotEmpty(dir.to_path_buf())),
    }
}

/// The SDK crate's path as the project's `Cargo.toml` names it: `--sdk` made absolute, else
/// `workspace` (the SDK of the workspace the binary was built from): relative
/// (`../../plugin-sdk`) for a project inside that workspace, absolute for one elsewhere. No
/// folder near the project is looked at.
fn sdk_path(dir: &Path, given: Option<&Path>, workspace: &Path) -> Result<String, NewError> {
    if let Some(given) = given {
        let sdk = std::fs::canonicalize(given).map_err(|_| NewError::NotTheSdk(given.to_path_buf()))?;
        if !is_sdk(&sdk) {
            return Err(NewError::NotTheSdk(given.to_path_buf()));
        }
        return Ok(toml_path(&sdk));
    }
    let sdk = std::fs::canonicalize(workspace)
        .ok()
        .filter(|sdk| is_sdk(sdk))
        .ok_or_else(|| NewError::SdkNotFound(workspace.to_path_buf()))?;
    let dir = std::fs::canonicalize(dir).map_err(io_error(dir))?;
    let inside = sdk.parent().and_then(|root| dir.strip_prefix(root).ok());
    match inside {
        Some(below) => {
            let mut relative: PathBuf = below.components().map(|_| Component::ParentDir).collect();
            relative.push("plugin-sdk");
            Ok(toml_path(&relative))
        }
        None => Ok(toml_path(&sdk)),
    }
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
        let values = values();
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
        assert!(
            xtask.contains(&format!("\"mypy=={MYPY_VERSION}\"")),
            "xtask's mypy differs from {MYPY_VERSION}"
        );
        let package = include_str!("../../plugins/echo-js/package.json");
        assert!(
            package.contains(&format!(
                "\"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS_VERSION}\""
            )),
            "echo-js's componentize-js differs from {COMPONENTIZE_JS_VERSION}"
        );
        assert!(
            package.contains(&format!("\"typescript\": \"{TYPESCRIPT_VERSION}\"")),
            "echo-js's typescript differs from {TYPESCRIPT_VERSION}"
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
            "dolphin_bridge_sdk.pyi",
            "dolphin_bridge_urllib.py",
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
    fn a_rust_project_uses_the_given_sdk_or_the_workspace_one() {
        // A stand-in for the workspace the binary was built from.
        let root = Scratch::new();
        let sdk = root.path().join("plugin-sdk");
        std::fs::create_dir_all(&sdk).unwrap();
        std::fs::write(sdk.join("Cargo.toml"), "[package]\nname = \"dolphin-bridge-sdk\"\n").unwrap();
        let inside = root.path().join("plugins").join("acme-chat");
        std::fs::create_dir_all(&inside).unwrap();
        assert_eq!(sdk_path(&inside, None, &sdk).unwrap(), "../../plugin-sdk");

        let elsewhere = Scratch::new();
        let absolute = toml_path(&std::fs::canonicalize(&sdk).unwrap());
        assert_eq!(sdk_path(elsewhere.path(), None, &sdk).unwrap(), absolute);
        let missing = elsewhere.path().join("no-workspace");
        let error = sdk_path(elsewhere.path(), None, &missing).unwrap_err();
        assert!(matches!(error, NewError::SdkNotFound(_)), "{error}");
        assert!(error.to_string().contains("--sdk"), "{error}");

        let lost = elsewhere.path().join("acme-chat");
        let mut given = options(Language::Rust, &lost);
        given.sdk = Some(sdk.clone());
        create(&given).unwrap();
        let manifest = std::fs::read_to_string(lost.join("Cargo.toml")).unwrap();
        assert!(manifest.contains(&format!("path = \"{absolute}\"")), "{manifest}");
        assert!(manifest.contains("name = \"acme-chat\""), "{manifest}");

        let other = elsewhere.path().join("other");
        let mut wrong = options(Language::Rust, &other);
        wrong.sdk = Some(elsewhere.path().to_path_buf());
        assert!(matches!(create(&wrong), Err(NewError::NotTheSdk(_))));
        assert!(!other.exists(), "nothing is left behind");
    }

    /// The placeholders' values of a project named `acme-chat`.
    fn values() -> Values {
        Values {
            pairs: vec![
                ("name", "acme-chat".into()),
                ("crate_name", "acme_chat".into()),
                ("wasm_file", "acme_chat.wasm".into()),
                ("wasm_path", "acme_chat.wasm".into()),
                ("sdk_path", "../plugin-sdk".into()),
                ("componentize_py_version", COMPONENTIZE_PY_VERSION.into()),
                ("mypy_version", MYPY_VERSION.into()),
                ("componentize_js_version", COMPONENTIZE_JS_VERSION.into()),
                ("typescript_version", TYPESCRIPT_VERSION.into()),
            ],
        }
    }

    #[test]
    fn a_plugin_sdk_planted_above_the_project_is_not_used() {
        // Anyone may write a `plugin-sdk/` into a shared temp folder: its build script would run
        // as whoever builds an adapter generated below it.
        let shared = Scratch::new();
        let planted = shared.path().join("plugin-sdk");
        std::fs::create_dir_all(&planted).unwrap();
        std::fs::write(
            planted.join("Cargo.toml"),
            "[package]\nname = \"dolphin-bridge-sdk\"\nbuild = \"build.rs\"\n",
        )
        .unwrap();
        let project = shared.path().join("work").join("acme-chat");
        let outcome = create(&options(Language::Rust, &project));
        let manifest = std::fs::read_to_string(project.join("Cargo.toml")).unwrap_or_default();
        assert!(
            !manifest.contains("../../plugin-sdk"),
            "the planted SDK is used:\n{manifest}"
        );
        let planted = toml_path(&std::fs::canonicalize(&planted).unwrap());
        assert!(!manifest.contains(&planted), "the planted SDK is used:\n{manifest}");
        let ours = toml_path(&std::fs::canonicalize(WORKSPACE_SDK).unwrap());
        outcome.unwrap();
        assert!(
            manifest.contains(&format!("dolphin-bridge-sdk = {{ path = \"{ours}\" }}")),
            "the bridge's own SDK: {manifest}"
        );
    }

    /// `--sdk` works for every language: Python and JavaScript projects get that SDK's file in
    /// place of the one built into the binary; a folder without it writes nothing.
    #[test]
    fn sdk_gives_python_and_javascript_projects_that_sdks_file() {
        let scratch = Scratch::new();
        let sdk = scratch.path().join("plugin-sdk");
        std::fs::create_dir_all(sdk.join("python")).unwrap();
        std::fs::create_dir_all(sdk.join("js")).unwrap();
        std::fs::write(sdk.join("python/dolphin_bridge_sdk.py"), "# a newer Python SDK\n").unwrap();
        std::fs::write(sdk.join("js/sdk.js"), "// a newer JavaScript SDK\n").unwrap();
        for (language, file, marker) in [
            (Language::Python, "dolphin_bridge_sdk.py", "# a newer Python SDK"),
            (Language::Js, "sdk.js", "// a newer JavaScript SDK"),
        ] {
            let project = scratch.path().join(format!("{language:?}"));
            let created = create(&Options {
                sdk: Some(sdk.clone()),
                ..options(language, &project)
            })
            .unwrap();
            assert!(created.files.contains(&PathBuf::from(file)), "{:?}", created.files);
            let written = std::fs::read_to_string(project.join(file)).unwrap();
            assert_eq!(written.trim_end(), marker, "{language:?}");
        }
        let empty = scratch.path().join("empty-sdk");
        std::fs::create_dir_all(&empty).unwrap();
        let project = scratch.path().join("refused");
        let error = create(&Options {
            sdk: Some(empty.clone()),
            ..options(Language::Js, &project)
        })
        .unwrap_err();
        assert!(error.to_string().contains("no js/sdk.js there"), "{error}");
        assert!(!project.exists(), "nothing written");
    }

    #[test]
    fn the_printed_test_command_works_from_where_plugin_new_ran() {
        let scratch = Scratch::new();
        let project = scratch.path().join("work").join("acme-chat");
        let created = create(&options(Language::Python, &project)).unwrap();
        assert_eq!(
            created.test_command_from_here("./bin/dolphin-bridge"),
            format!(
                "./bin/dolphin-bridge plugin test {}/acme_chat.wasm --fixtures {}/fixtures",
                project.display(),
                project.display()
            )
        );
    }

    #[test]
    fn a_target_that_is_a_symlink_is_refused() {
        let dir = Scratch::new();
        let victim = dir.path().join("victim");
        std::fs::create_dir(&victim).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        let outcome = create(&options(Language::Python, &link));
        assert_eq!(
            std::fs::read_dir(&victim).unwrap().count(),
            0,
            "written through the link"
        );
        let error = outcome.unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
    }

    #[test]
    fn a_symlink_in_the_project_folder_is_not_followed() {
        let dir = Scratch::new();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, "mine").unwrap();
        let victim_dir = dir.path().join("victim-dir");
        std::fs::create_dir(&victim_dir).unwrap();
        // A file planted after the folder was found empty, and a folder.
        let project = dir.path().join("file-link");
        std::fs::create_dir(&project).unwrap();
        std::os::unix::fs::symlink(&victim, project.join("app.py")).unwrap();
        let file_outcome = write_files(&project, PYTHON.iter(), &values(), None);
        let project = dir.path().join("folder-link");
        std::fs::create_dir(&project).unwrap();
        std::os::unix::fs::symlink(&victim_dir, project.join("wit")).unwrap();
        let folder_outcome = write_files(&project, PYTHON.iter(), &values(), None);
        assert_eq!(
            std::fs::read_to_string(&victim).unwrap(),
            "mine",
            "written through the link"
        );
        assert_eq!(
            std::fs::read_dir(&victim_dir).unwrap().count(),
            0,
            "written through the link"
        );
        assert!(file_outcome.is_err() && folder_outcome.is_err());
    }

    #[test]
    fn an_existing_folder_of_another_user_is_refused() {
        let dir = Scratch::new();
        let theirs = dir.path().join("theirs");
        std::fs::create_dir(&theirs).unwrap();
        // Giving a folder away takes root; as another user, a folder of root's stands in.
        let other = if unsafe { libc::getuid() } == 0 {
            std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
            theirs.clone()
        } else {
            PathBuf::from("/")
        };
        let outcome = create(&options(Language::Python, &other));
        assert!(!other.join("app.py").exists(), "written into another user's folder");
        let error = outcome.unwrap_err();
        assert!(matches!(error, NewError::NotOwned(_)), "{error}");
    }
}
