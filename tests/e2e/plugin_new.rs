//! `dolphin-bridge plugin new`: the project of each language's template, built with the command
//! its README gives, passes `plugin test` against its own fixtures out of the box.
//!
//! The builds reuse what `cargo xtask build-plugins` installed and built, so nothing is
//! downloaded: the Rust project builds into the workspace's target folder with the workspace's
//! lock file (the SDK and its dependencies are compiled already), the Python one with the
//! componentize-py xtask installed, and the JavaScript one with the componentize-js `echo-js`
//! installed (its `node_modules` linked in place of `npm install`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use dolphin_bridge_tests::adapters;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `command` to completion; panics with its output when it fails.
pub(crate) fn run(what: &str, command: &mut Command) -> Output {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{}\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
    output
}

/// `dolphin-bridge plugin new --lang LANG NAME --dir WORK/NAME [extra]`; returns the project folder.
pub(crate) fn plugin_new(work: &Path, lang: &str, name: &str, extra: &[&str]) -> PathBuf {
    let dir = work.join(name);
    let output = run(
        "plugin new",
        Command::new(adapters::bridge_binary())
            .args(["plugin", "new", "--lang", lang, name, "--dir"])
            .arg(&dir)
            .args(extra)
            .current_dir(work),
    );
    let stdout = text(&output.stdout);
    assert!(stdout.contains("fixtures/tenant.toml"), "lists what it wrote: {stdout}");
    assert!(stdout.contains("plugin test"), "tells how to test: {stdout}");
    dir
}

/// `plugin test` of `component` against the project's fixtures: asserts every fixture passed and
/// the output shows the vendor request and the 3Dolphins events.
fn assert_plugin_test_passes(project: &Path, component: &Path) {
    let output = Command::new(adapters::bridge_binary())
        .args(["plugin", "test"])
        .arg(component)
        .arg("--fixtures")
        .arg(project.join("fixtures"))
        .current_dir(project)
        .stdin(Stdio::null())
        .output()
        .expect("running plugin test");
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("4 of 4 fixture(s) passed"), "{stdout}");

    let section = |name: &str| -> &str {
        stdout
            .split("== ")
            .find(|s| s.starts_with(name))
            .unwrap_or_else(|| panic!("{name} is reported: {stdout}"))
    };
    let incoming = section("incoming/01-customer-message.json");
    assert!(incoming.contains("-> vendor POST /messages"), "{incoming}");
    assert!(incoming.contains(r#""message": "Halo""#), "{incoming}");
    assert!(incoming.contains("authorization: Bearer [redacted]"), "{incoming}");
    assert!(incoming.contains("idempotency-key: "), "the delivery id: {incoming}");
    assert!(!stdout.contains("fixture-token"), "a secret was printed: {stdout}");

    let reply = section("webhooks/02-agent-reply.json");
    assert!(
        reply.contains("-> 3Dolphins POST /dolphin/integration/incomingMessage"),
        "{reply}"
    );
    assert!(
        reply.contains(r#""message": "Hello Farhan, how can I help?""#),
        "{reply}"
    );
    let closed = section("webhooks/03-closed.json");
    assert!(closed.contains(r#""event": "Close""#), "{closed}");
    let refused = section("webhooks/04-unknown-body.fails.json");
    assert!(refused.contains("<- answer 400"), "{refused}");
}

/// The `node_modules` of `plugins/echo-js`, which holds the componentize-js the JS template pins
/// (what `npm install` would put in a template project).
pub(crate) fn installed_componentize_js() -> PathBuf {
    let installed = adapters::workspace_root().join("plugins/echo-js/node_modules");
    assert!(
        installed.join("@bytecodealliance/componentize-js").is_dir(),
        "{} has no componentize-js: run `cargo xtask build-plugins`",
        installed.display()
    );
    installed
}

/// Prints how long each step took (shown with `--nocapture`).
fn report(language: &str, generated: Instant, built: Instant, tested: Instant) {
    eprintln!(
        "plugin new --lang {language}: build {:.1} s, plugin test {:.1} s (total {:.1} s)",
        (built - generated).as_secs_f64(),
        (tested - built).as_secs_f64(),
        (tested - generated).as_secs_f64(),
    );
}

#[test]
fn the_rust_template_builds_and_passes_plugin_test() {
    let work = tempfile::tempdir().expect("a temp dir");
    let sdk = adapters::workspace_root().join("plugin-sdk");
    let project = plugin_new(
        work.path(),
        "rust",
        "plugin-new-rust",
        &["--sdk", sdk.to_str().expect("a UTF-8 path")],
    );
    // The workspace's versions of the SDK's dependencies, compiled already.
    std::fs::copy(
        adapters::workspace_root().join("Cargo.lock"),
        project.join("Cargo.lock"),
    )
    .expect("copying the lock file");
    let generated = Instant::now();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    run(
        "cargo build",
        Command::new(cargo)
            .args(["build", "--profile", "adapter", "--target", "wasm32-wasip2"])
            .env("CARGO_TARGET_DIR", adapters::target_dir())
            .current_dir(&project),
    );
    let built = Instant::now();
    let component = adapters::adapter_file("plugin-new-rust");
    assert_plugin_test_passes(&project, &component);
    report("rust", generated, built, Instant::now());
    let _ = std::fs::remove_file(component);
}

/// `./build.sh` of a Python project, with the componentize-py and mypy `cargo xtask
/// build-plugins` installs.
fn python_build(project: &Path) -> Command {
    let tools = adapters::target_dir().join("adapter-tools/python/bin");
    for tool in ["componentize-py", "mypy"] {
        assert!(
            tools.join(tool).is_file(),
            "{} is missing: run `cargo xtask build-plugins`",
            tools.join(tool).display()
        );
    }
    let mut command = Command::new("./build.sh");
    command
        .env("COMPONENTIZE_PY", tools.join("componentize-py"))
        .env("MYPY", tools.join("mypy"))
        .current_dir(project);
    command
}

#[test]
fn the_python_template_builds_and_passes_plugin_test() {
    let work = tempfile::tempdir().expect("a temp dir");
    let project = plugin_new(work.path(), "python", "plugin-new-python", &[]);
    let generated = Instant::now();
    run("build.sh", &mut python_build(&project));
    let built = Instant::now();
    assert_plugin_test_passes(&project, &project.join("plugin_new_python.wasm"));
    report("python", generated, built, Instant::now());
}

#[test]
fn the_js_template_builds_and_passes_plugin_test() {
    let installed = installed_componentize_js();
    let work = tempfile::tempdir().expect("a temp dir");
    let project = plugin_new(work.path(), "js", "plugin-new-js", &[]);
    let package = std::fs::read_to_string(project.join("package.json")).expect("package.json");
    let echo_package =
        std::fs::read_to_string(adapters::workspace_root().join("plugins/echo-js/package.json")).expect("echo-js");
    let pin = r#""@bytecodealliance/componentize-js": "0.23.0""#;
    assert!(
        package.contains(pin) && echo_package.contains(pin),
        "the template pins the componentize-js echo-js has installed:\n{package}"
    );
    // What `npm install` would put there.
    std::os::unix::fs::symlink(&installed, project.join("node_modules")).expect("linking node_modules");
    let generated = Instant::now();
    run(
        "node build.mjs",
        Command::new("node").arg("build.mjs").current_dir(&project),
    );
    let built = Instant::now();
    assert_plugin_test_passes(&project, &project.join("plugin_new_js.wasm"));
    report("js", generated, built, Instant::now());
}

/// The JS template's build joins adapter.js and the SDK with adapter.js first, line for line, and
/// the SDK in a scope of its own, and type-checks adapter.js against the SDK's types: a typo
/// fails the build naming adapter.js and the typo's line, a misspelt field its line and the
/// field; a name the SDK also declares builds; an exception at run time is reported at the
/// author's line of adapter.js.
#[test]
fn js_build_and_runtime_errors_name_the_authors_own_lines() {
    let installed = installed_componentize_js();
    let work = tempfile::tempdir().expect("a temp dir");
    let project = plugin_new(work.path(), "js", "plugin-new-js-errors", &[]);
    std::os::unix::fs::symlink(&installed, project.join("node_modules")).expect("linking node_modules");
    let adapter_path = project.join("adapter.js");
    let original = std::fs::read_to_string(&adapter_path).expect("adapter.js");
    let parse = "  const body = webhook.parseBody(request);";
    let line = original
        .lines()
        .position(|l| l == parse)
        .unwrap_or_else(|| panic!("the template parses the webhook body: {original}"))
        + 1;
    let build = || {
        Command::new("node")
            .arg("build.mjs")
            .current_dir(&project)
            .stdin(Stdio::null())
            .output()
            .expect("running node build.mjs")
    };

    let typo = original.replace(parse, "  const body = webhook.parseBody(request));");
    std::fs::write(&adapter_path, typo).expect("writing the typo");
    let failed = build();
    let stderr = text(&failed.stderr);
    assert!(!failed.status.success(), "the typo built: {stderr}");
    assert!(
        stderr.contains(&format!("adapter.js:{line}: SyntaxError")),
        "names adapter.js and line {line}: {stderr}"
    );

    // A misspelt field of the SDK's types: `tsc` fails the build at its line.
    let misspelt = original.replace("message: event.message,", "message: event.mesage,");
    let type_line = misspelt
        .lines()
        .position(|l| l.contains("event.mesage"))
        .expect("the template posts event.message")
        + 1;
    std::fs::write(&adapter_path, misspelt).expect("writing the misspelt field");
    let failed = build();
    let stderr = text(&failed.stderr);
    assert!(!failed.status.success(), "the misspelt field built: {stderr}");
    assert!(
        stderr.contains(&format!("adapter.js({type_line},")) && stderr.contains("'mesage' does not exist"),
        "names adapter.js, line {type_line} and the field: {stderr}"
    );

    // `logger` is the SDK's too (not imported here): once a clash that failed the build.
    let thrown = original
        .replace(parse, "  const body = webhook.parseBody(request); body.missing.boom();")
        .replace(
            "\nexport const onIncoming",
            "\nconst logger = 'the adapter\\'s own';\nexport const onIncoming",
        );
    let line = thrown
        .lines()
        .position(|l| l.contains("body.missing.boom()"))
        .expect("the throwing line")
        + 1;
    std::fs::write(&adapter_path, thrown).expect("writing the throwing adapter");
    let built = build();
    assert!(built.status.success(), "{}", text(&built.stderr));
    let output = Command::new(adapters::bridge_binary())
        .args(["plugin", "test", "plugin_new_js_errors.wasm", "--fixtures", "fixtures"])
        .current_dir(&project)
        .stdin(Stdio::null())
        .output()
        .expect("running plugin test");
    let stdout = text(&output.stdout);
    let reply = stdout
        .split("== ")
        .find(|s| s.starts_with("webhooks/02-agent-reply.json"))
        .unwrap_or_else(|| panic!("the webhook fixture is reported: {stdout}"));
    assert!(reply.contains("uncaught exception: TypeError"), "{reply}");
    assert!(
        reply.contains(&format!("adapter.js:{line}:")),
        "the author's line {line}: {reply}"
    );
}

#[test]
fn plugin_new_refuses_a_folder_that_is_not_empty() {
    let work = tempfile::tempdir().expect("a temp dir");
    let dir = work.path().join("taken");
    std::fs::create_dir(&dir).expect("a folder");
    std::fs::write(dir.join("notes.txt"), "mine").expect("a file");
    let output = Command::new(adapters::bridge_binary())
        .args(["plugin", "new", "--lang", "python", "taken"])
        .current_dir(work.path())
        .stdin(Stdio::null())
        .output()
        .expect("running plugin new");
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("not an empty folder"), "{stderr}");
    assert_eq!(std::fs::read_to_string(dir.join("notes.txt")).unwrap(), "mine");
    assert!(!dir.join("app.py").exists());
}

/// The Python template's build type-checks app.py against the SDK's stubs and the WIT's
/// bindings: a misspelt field of the event, or a misspelt SDK helper, fails the build naming
/// app.py and the line, and no component is written.
#[test]
fn a_python_type_error_fails_the_build_at_its_line() {
    let work = tempfile::tempdir().expect("a temp dir");
    let project = plugin_new(work.path(), "python", "typo-python", &[]);
    let app = project.join("app.py");
    let original = std::fs::read_to_string(&app).expect("app.py");
    for (right, wrong, complaint) in [
        (
            "event.ticket_number",
            "event.tiket_number",
            r#""IncomingEvent" has no attribute "tiket_number""#,
        ),
        (
            "config.require(\"url\")",
            "config.requir(\"url\")",
            r#""_Config" has no attribute "requir""#,
        ),
    ] {
        let line = original
            .lines()
            .position(|l| l.contains(right))
            .unwrap_or_else(|| panic!("the template uses {right}: {original}"))
            + 1;
        std::fs::write(&app, original.replacen(right, wrong, 1)).expect("writing the typo");
        let output = python_build(&project).output().expect("running build.sh");
        let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
        assert!(!output.status.success(), "the build passed with {wrong}:\n{said}");
        assert!(
            said.contains(&format!("app.py:{line}: error:")) && said.contains(complaint),
            "the error names app.py:{line} and says {complaint}:\n{said}"
        );
        assert!(!project.join("typo_python.wasm").exists(), "no component is written");
    }
}
