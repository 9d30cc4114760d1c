#!/usr/bin/env bash
# Installs the pinned ansible-core (`ansible-playbook`) for the lab benchmark's Ansible contender
# (bench/lab-onboarding.ts, `npm run bench -- --only lab`) and the playbook syntax check in test/bench/lab-scripts.test.ts.
# Not part of `npm run setup`: only that benchmark (run by hand) installs it, and the test skips without it.
# A venv built once per machine in the tool cache (scripts/tool-cache.sh, ${UNDERLAY_CACHE:-/var/cache/underlay}/tools),
# linked as .tools/ansible. Idempotent: a warm run checks the cached venv against its MANIFEST and the link.
# Every distribution is pinned by version and sha256 (pip --require-hashes, wheels only, no dependency resolution
# beyond this list), fetched from PyPI through pip; the hashes are those of the CPython 3.11 x86_64 wheels.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tool-cache.sh

VERSION=2.19.14
REQUIREMENTS="\
ansible-core==$VERSION --hash=sha256:d518d0e96fa75bedfe9b0a96d5b158aa712d092961824c115140c8677b88ff06
cffi==2.1.1 --hash=sha256:34e261f78cb6ceaaa36f42f2613f4380d94d9c759a9c73c769ee6e0247364632
cryptography==50.0.2 --hash=sha256:9dab55f57c74c3cad24c323bacbbd04be4705ba6eb0d92e920b1fc4837ed5079
jinja2==3.1.6 --hash=sha256:85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67
markupsafe==3.0.4 --hash=sha256:6da83a088f8ef93b2d483a8232a4dbf4d69d3d8496b568a03c56becac43e1808
packaging==26.4 --hash=sha256:81383611a09c1bc0b08b76e0fd5829d7c6824c65b27a6aee339da133f4233ea2
pycparser==3.12 --hash=sha256:a076f3f489b39b43ed13563a1dafe42447445bec2e294154ec5c57fcdda4c85e
pyyaml==6.0.4 --hash=sha256:622aa875fa6533f25fedcffe23079357d65a690d462200afed5d8e9d0e01ebee
resolvelib==1.2.1 --hash=sha256:fb06b66c8da04172d9e72a21d7d06186d8919e32ae5ab5cdf5b9d920be805ac2"
# ansible writes its caches next to the venv at first use otherwise; a published entry must not change (MANIFEST).
tool_pip_venv ansible "$VERSION" "$REQUIREMENTS" ansible-playbook .tools/ansible env ANSIBLE_LOCAL_TEMP="$(mktemp -d)" ANSIBLE_HOME="$(mktemp -d)" ansible-playbook --version
