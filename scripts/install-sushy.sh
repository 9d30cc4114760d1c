#!/usr/bin/env bash
# Installs the pinned sushy-tools (the OpenStack Redfish emulator, `sushy-emulator`) for the Redfish driver and ESXi
# install tests: a venv built once per machine in the tool cache (scripts/tool-cache.sh,
# ${UNDERLAY_CACHE:-/var/cache/underlay}/tools), linked as .tools/sushy. Idempotent: a warm run checks the cached
# venv against its MANIFEST and the link, nothing else.
# Every distribution is pinned by version and sha256 (pip --require-hashes, wheels only, no dependency
# resolution beyond this list), fetched from PyPI through pip. The hashes are those of the CPython 3.11
# x86_64 wheels (the project machine's python3); another interpreter fails loudly here rather than drifting.
# The venv is built where it stays (venvs are not relocatable); the interpreter is part of the cache key.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tool-cache.sh

VERSION=2.2.0
REQUIREMENTS="\
sushy-tools==$VERSION --hash=sha256:a9efb547beee24b3a81a8db0af1c99ffa3818b82013a6165188734abffe95f65
bcrypt==5.0.0 --hash=sha256:611f0a17aa4a25a69362dcc299fda5c8a3d4f160e2abb3831041feb77393a14a
blinker==1.9.0 --hash=sha256:ba0efaa9080b619ff2f3459d1d500c57bddea4a6b424b60a91141db6fd2f08bc
certifi==2026.10.19.post1 --hash=sha256:1324c476b4811eff41a8bc2122cd0bbd4d9c7234c725446d99ab1612b3a7fdd2
charset-normalizer==3.5.3 --hash=sha256:2a6f937e0b70133d1f826d0a253331b6fe1a4c874808cc12e16f2fb8177042f4
click==8.5.1 --hash=sha256:8bb5376d2006950386f8c6427613334a2acadc5f559cb80e638d00b4df957e37
flask==3.1.3 --hash=sha256:f4bcbefc124291925f1a26446da31a5178f9483862233b23c0c96a20701f670c
idna==3.20 --hash=sha256:ab7ae7122974553370f0bdb919e1a960b2cd1bc1ef0276416d896db81c14582c
itsdangerous==2.2.0 --hash=sha256:c6242fc49e35958c8b15141343aa660db5fc54d4f13a1db01a3f5891b98700ef
jinja2==3.1.6 --hash=sha256:85ece4451f492d0c13c5dd7c13a64681a86afae63a5f347908daf103ce6d2f67
markupsafe==3.0.4 --hash=sha256:6da83a088f8ef93b2d483a8232a4dbf4d69d3d8496b568a03c56becac43e1808
pbr==7.1.3 --hash=sha256:6583e878a1d97cb135fdc509811f31b9235905cde8d4dacd3dbadf9efc45d745
requests==2.34.2 --hash=sha256:2a0d60c172f83ac6ab31e4554906c0f3b3588d37b5cb939b1c061f4907e278e0
setuptools==84.2.1 --hash=sha256:ca140b45d5325a9478f880e351484f62fef15f336462e449ca0c03c873d589c2
tenacity==9.2.1 --hash=sha256:9e56f17539296baab7beabb08b92f6ee3d7be92d8be72d763360677c2ad6580e
urllib3==2.8.0 --hash=sha256:0cf3cae568d36aa9576b28dfb35f11328f1cb974ca7647d9475ebb86c75ac6e3
webob==1.8.11 --hash=sha256:4addd1d38d6a7fbe0eda22d45f25a40d74c8b290f3a99c0ac3d4023cf21f2da2
werkzeug==3.1.9 --hash=sha256:6392e50c78460ba618e5b21f08a71f59c99ce99cdc6cf6e3dd7e6ccca8754fab"
tool_pip_venv sushy "$VERSION" "$REQUIREMENTS" sushy-emulator .tools/sushy sushy-emulator --help
