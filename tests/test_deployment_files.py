"""The deployment files (Dockerfile, docker-compose.yml, .env.example) agree with the code.

Structure is checked with PyYAML and plain parsing every time; `docker compose config` is run
in addition wherever the docker client has the compose plugin.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from apps.core.secrets.required import REQUIRED_SECRETS

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

SECRET_NAMES = frozenset(spec.name for spec in REQUIRED_SECRETS)
LONG_RUNNING = ("db", "redis", "web", "worker", "beat")
APP_SERVICES = ("web", "worker", "beat")
# Names in .env.example that Bulwark itself does not read, and the file that does use them.
DEPLOYMENT_ONLY = {
    "POSTGRES_PASSWORD": COMPOSE_FILE,
    "POSTGRES_APP_PASSWORD": COMPOSE_FILE,
    "WEB_CONCURRENCY": DOCKERFILE,
}
ENV_READERS = frozenset(
    {
        "env_str",
        "env_bool",
        "env_int",
        "env_float",
        "env_list",
        "env_choice",
        "env_networks",
        "env_rate",
        "get_secret",
        "get_optional_secret",
        "getenv",
    }
)
DATABASE_PASSWORDS = ("POSTGRES_PASSWORD", "POSTGRES_APP_PASSWORD")
PASSWORD_INTERPOLATION = re.compile(r"^\$\{POSTGRES_(APP_)?PASSWORD:\?[^}]+\}$")


# --- helpers ------------------------------------------------------------------------------------


def load_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def command_words(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {name: "" if value is None else str(value) for name, value in env.items()}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) for each logical line, continuations joined, comments dropped."""
    lines = [
        line
        for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()
        if not line.lstrip().startswith("#")
    ]
    logical = re.sub(r"\\\n", "", "\n".join(lines))
    instructions = []
    for line in logical.splitlines():
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    return instructions


def exec_form(arguments: str) -> list[str]:
    """The JSON array of an exec-form instruction; Docker silently falls back to a shell when
    the JSON is invalid, so invalid JSON is a failure here."""
    words = json.loads(arguments)
    assert isinstance(words, list), arguments
    assert all(isinstance(word, str) for word in words), arguments
    return words


def dockerfile_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for keyword, arguments in dockerfile_instructions():
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                values[name] = value
    return values


def docker_compose_available() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    try:
        result = subprocess.run(
            [docker, "compose", "version"], capture_output=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def env_example_entries() -> dict[str, tuple[str, bool]]:
    """name -> (value, active). `NAME=value` is active; `# NAME=value` (no spaces) is an
    optional setting shown with its default."""
    entries: dict[str, tuple[str, bool]] = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if match := re.fullmatch(r"([A-Z][A-Z0-9_]*)=(.*)", line):
            name, value, active = match.group(1), match.group(2), True
        elif match := re.fullmatch(r"# ([A-Z][A-Z0-9_]*)=(\S*)", line):
            name, value, active = match.group(1), match.group(2), False
        else:
            continue
        assert name not in entries, f"{name} is listed twice in .env.example"
        entries[name] = (value, active)
    return entries


def _literal_first_argument(call: ast.Call) -> str | None:
    if call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def env_names_read_by_source() -> set[str]:
    """Names passed as string literals to the env_* readers, get_secret, os.getenv,
    os.environ.get or os.environ[...] anywhere under controlplane/ and apps/, plus the six
    required secrets (read through the secrets provider)."""
    names = set(SECRET_NAMES)
    for folder in ("controlplane", "apps"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call):
                    func = node.func
                    called = func.attr if isinstance(func, ast.Attribute) else None
                    called = func.id if isinstance(func, ast.Name) else called
                    reads_environ = (
                        isinstance(func, ast.Attribute)
                        and func.attr == "get"
                        and _is_os_environ(func.value)
                    )
                    if called in ENV_READERS or reads_environ:
                        name = _literal_first_argument(node)
                        if name is not None:
                            names.add(name)
                elif (
                    isinstance(node, ast.Subscript)
                    and _is_os_environ(node.value)
                    and isinstance(node.slice, ast.Constant)
                    and isinstance(node.slice.value, str)
                ):
                    names.add(node.slice.value)
    return names


# --- docker-compose.yml -------------------------------------------------------------------------


def test_compose_file_defines_the_stack(tmp_path):
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    compose = load_compose()
    services = compose["services"]

    assert set(LONG_RUNNING) <= set(services), sorted(services)
    assert str(services["db"]["image"]).startswith("postgres:16")
    assert str(services["redis"]["image"]).startswith("redis:7")

    for name in LONG_RUNNING:
        healthcheck = services[name].get("healthcheck") or {}
        assert not healthcheck.get("disable"), f"{name}'s healthcheck is disabled"
        test = healthcheck.get("test")
        assert test, f"{name} has no healthcheck test"
        if isinstance(test, list):
            assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, (name, test)
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert "redis-cli ping" in " ".join(services["redis"]["healthcheck"]["test"])
    web_probe = " ".join(services["web"]["healthcheck"]["test"])
    assert "urllib" in web_probe and "http://127.0.0.1:8000/readyz" in web_probe
    assert "celery -A controlplane inspect ping" in " ".join(
        services["worker"]["healthcheck"]["test"]
    )

    # One-shot migrations, before anything that uses the database starts.
    migrate = services["migrate"]
    assert command_words(migrate)[-3:] == ["manage.py", "migrate", "--noinput"]
    assert str(migrate.get("restart")) == "no"
    assert migrate["depends_on"]["db"]["condition"] == "service_healthy"
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert isinstance(depends_on, dict), f"{name}: depends_on needs conditions"
        for dependency in ("db", "redis"):
            assert depends_on[dependency]["condition"] == "service_healthy", (name, dependency)
        assert depends_on["migrate"]["condition"] == "service_completed_successfully", name

    web_command = " ".join(command_words(services["web"]))
    assert web_command.startswith("gunicorn -c controlplane/gunicorn.conf.py controlplane.wsgi"), (
        web_command
    )
    assert "--bind 0.0.0.0:8000" in web_command
    assert " ".join(command_words(services["worker"])).startswith("celery -A controlplane worker")
    assert " ".join(command_words(services["beat"])).startswith("celery -A controlplane beat")
    # The web service runs exactly what the image runs by default.
    dockerfile_cmd = next(args for keyword, args in dockerfile_instructions() if keyword == "CMD")
    assert command_words(services["web"]) == exec_form(dockerfile_cmd)

    published = [str(port) for port in services["web"].get("ports", [])]
    assert any(port.endswith(":8000") or port == "8000" for port in published), published
    for name in set(services) - {"web"}:
        assert not services[name].get("ports"), f"{name} publishes a port"

    # Configuration: .env for everything, the compose network's own URLs on top.
    for name in (*APP_SERVICES, "migrate"):
        env_file = services[name].get("env_file")
        assert ".env" in ([env_file] if isinstance(env_file, str) else env_file or []), name
        env = environment(services[name])
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        # Bulwark connects as a role that owns nothing; only migrate as the owner.
        database_url = env["DATABASE_URL"]
        assert database_url.startswith("postgres://bulwark_app:${POSTGRES_APP_PASSWORD:?")
        assert database_url.endswith("}@db:5432/bulwark")
        owner_url = env.get("DATABASE_OWNER_URL")
        if name == "migrate":
            assert owner_url is not None
            assert owner_url.startswith("postgres://bulwark:${POSTGRES_PASSWORD:?")
            assert owner_url.endswith("}@db:5432/bulwark")
        else:
            assert owner_url is None, f"{name} holds the owner's credentials"
        assert not SECRET_NAMES & set(env), f"{name} sets a secret in docker-compose.yml"

    # No literal password: the database's comes from .env by interpolation only.
    db_env = environment(services["db"])
    assert PASSWORD_INTERPOLATION.match(db_env["POSTGRES_PASSWORD"]), db_env["POSTGRES_PASSWORD"]
    for name, service in services.items():
        for key, value in environment(service).items():
            if "PASSWORD" not in key:
                continue
            if name in (*APP_SERVICES, "migrate"):
                # .env gives the containers everything in it: the passwords are blanked, so
                # that only DATABASE_URL (and migrate's DATABASE_OWNER_URL) carries one.
                assert value == "", (name, key)
            else:
                assert PASSWORD_INTERPOLATION.match(value), key
    for name in APP_SERVICES:
        assert "POSTGRES_PASSWORD" in environment(services[name]), name
    for password in re.findall(r"://[^:/@\s\"']+:([^@\s\"']+)@", text):
        assert PASSWORD_INTERPOLATION.match(password), password

    # Named volumes for the database and the media files.
    volumes = set(compose["volumes"])
    db_mounts = [str(mount) for mount in services["db"]["volumes"]]
    assert any(mount.endswith(":/var/lib/postgresql/data") for mount in db_mounts)
    assert {mount.split(":")[0] for mount in db_mounts} <= volumes
    media_root = environment(services["web"])["MEDIA_ROOT"]
    for name in ("web", "worker"):
        assert f"media:{media_root}" in [str(mount) for mount in services[name]["volumes"]]
    assert "media" in volumes

    if docker_compose_available():
        _check_with_docker_compose(tmp_path)


def _check_with_docker_compose(tmp_path: Path) -> None:
    """`docker compose config` on a copy beside an empty .env, with and without the password."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    (tmp_path / ".env").write_text("", encoding="utf-8")
    base = [
        shutil.which("docker") or "docker",
        "compose",
        "--project-directory",
        str(tmp_path),
        "-f",
        str(tmp_path / "docker-compose.yml"),
        "config",
        "--quiet",
    ]
    env = {key: value for key, value in os.environ.items() if key != "POSTGRES_PASSWORD"}
    env = {key: value for key, value in env.items() if key != "POSTGRES_APP_PASSWORD"}
    with_password = {
        **env,
        "POSTGRES_PASSWORD": "compose-config-check-only",
        "POSTGRES_APP_PASSWORD": "compose-config-check-only-app",
    }
    result = subprocess.run(base, env=with_password, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    without = subprocess.run(base, env=env, capture_output=True, text=True, check=False)
    assert without.returncode != 0
    assert "set POSTGRES_PASSWORD in .env" in without.stderr


# --- .env.example -------------------------------------------------------------------------------


def test_env_example_lists_exactly_the_settings_the_code_reads():
    entries = env_example_entries()
    listed = set(entries)
    read = env_names_read_by_source()
    # The parser must see the readers it claims to (settings, env.py, the secrets package).
    assert {"BULWARK_ENV", "DATABASE_CONN_MAX_AGE", "SECRETS_CACHE_TTL", "BULWARK_DOTENV"} <= read

    assert read - listed == set(), "read by the code but missing from .env.example"
    assert listed - read - set(DEPLOYMENT_ONLY) == set(), "in .env.example but read nowhere"
    for name, used_by in DEPLOYMENT_ONLY.items():
        assert name in listed
        assert name in used_by.read_text(encoding="utf-8"), f"{used_by.name} does not use {name}"

    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    assert "_FILE" in text  # the NAME_FILE way of giving a secret is documented

    # Each entry has its meaning (and, unless it is a secret, its default) just above it.
    lines = text.splitlines()
    for name in entries:
        index = next(i for i, line in enumerate(lines) if re.fullmatch(rf"(# )?{name}=\S*", line))
        comment = []
        for line in reversed(lines[:index]):
            if not line.startswith("#") or re.fullmatch(r"# [A-Z][A-Z0-9_]*=\S*", line):
                break
            comment.append(line)
        assert comment, f"{name} has no comment line above it"
        if name not in SECRET_NAMES and name not in DATABASE_PASSWORDS:
            assert "Default" in " ".join(comment), f"{name}'s comment gives no default"


def test_env_example_holds_no_secret_values():
    entries = env_example_entries()
    for name in (*sorted(SECRET_NAMES), *DATABASE_PASSWORDS):
        value, active = entries[name]
        assert active and value == "", f"{name} must be listed with an empty value"
    for name, (value, _) in entries.items():
        if name.endswith(("_KEY", "_KEYS", "_PEPPER", "PASSWORD")):
            assert value == "", name


def test_deployment_files_hold_no_key_material():
    for path in (DOCKERFILE, COMPOSE_FILE, ENV_EXAMPLE, ROOT / ".dockerignore"):
        text = path.read_text(encoding="utf-8")
        assert "PRIVATE KEY-----" not in text, path.name
        # Nothing that looks like a generated token: 40+ characters of base64 or hex with many
        # distinct characters (section rulers of dashes are not tokens).
        tokens = re.findall(r"[A-Za-z0-9+/_-]{40,}", text)
        assert not [token for token in tokens if len(set(token)) >= 10], path.name


# --- Dockerfile ---------------------------------------------------------------------------------


def test_dockerfile_builds_a_locked_non_root_image_with_a_healthcheck():
    instructions = dockerfile_instructions()
    keywords = [keyword for keyword, _ in instructions]

    args = dict(arguments.split("=", 1) for keyword, arguments in instructions if keyword == "ARG")
    base_images = [arguments.split()[0] for keyword, arguments in instructions if keyword == "FROM"]
    assert base_images, "no FROM"
    for image in base_images:
        resolved = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), ""), image)
        assert resolved.startswith("python:3.11-slim"), resolved

    runs = [arguments for keyword, arguments in instructions if keyword == "RUN"]
    installs = [run for run in runs if "pip install" in run]
    assert installs, "no pip install"
    for run in installs:
        assert "--require-hashes" in run and "--no-deps" in run, run
        assert re.search(r"-r \S*requirements\.lock\b", run), run
        assert "requirements-dev.lock" not in run

    # Runs as a non-root user in the final stage.
    last_from = max(i for i, keyword in enumerate(keywords) if keyword == "FROM")
    users = [arguments for keyword, arguments in instructions[last_from:] if keyword == "USER"]
    assert users, "the final stage sets no USER"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}, users[-1]

    env = dockerfile_env()
    assert env["DJANGO_SETTINGS_MODULE"] == "controlplane.settings"
    assert env["BULWARK_ENV"] == "production"
    # No secret is baked into a layer's ENV or ARG.
    baked = set(env) | set(args)
    assert not {name for name in baked if name in SECRET_NAMES or name.endswith("_FILE")}

    assert "8000" in next(arguments for keyword, arguments in instructions if keyword == "EXPOSE")

    healthchecks = [arguments for keyword, arguments in instructions if keyword == "HEALTHCHECK"]
    assert len(healthchecks) == 1, healthchecks
    probe = exec_form(healthchecks[0].split(" CMD ", 1)[1])
    assert probe[0] == "python" and "urllib" in probe[-1] and "/healthz" in probe[-1]

    cmd = exec_form(next(arguments for keyword, arguments in instructions if keyword == "CMD"))
    assert cmd[:4] == ["gunicorn", "-c", "controlplane/gunicorn.conf.py", "controlplane.wsgi"]
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0:8000"


def test_dockerfile_collectstatic_step_runs_with_throwaway_secrets_only(tmp_path):
    """The build's collectstatic RUN, executed here as the image would: with the image's ENV
    and no secret anywhere in the environment. It must succeed and write no .env."""
    collect = next(
        arguments
        for keyword, arguments in dockerfile_instructions()
        if keyword == "RUN" and "collectstatic" in arguments
    )
    assert "REQUIRED_SECRETS" in collect
    step = collect.split(" && ")[0]  # the rest (compileall) works on /app, which is not here
    static_root = tmp_path / "static"
    dotenv = ROOT / ".env"
    dotenv_before = dotenv.stat().st_mtime_ns if dotenv.exists() else None
    env = {
        **dockerfile_env(),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "STATIC_ROOT": str(static_root),
    }
    assert not SECRET_NAMES & set(env)
    result = subprocess.run(
        ["/bin/sh", "-c", step], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert (static_root / "staticfiles.json").is_file()
    # Nothing was generated into a .env (which would then land in the image).
    assert (dotenv.stat().st_mtime_ns if dotenv.exists() else None) == dotenv_before
