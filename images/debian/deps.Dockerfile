# The dependencies layer of a local build (images/build.sh --local-base): BASE plus every wheel
# in dist/ except himalia's own, so rebuilding after a change to himalia installs himalia only.
# Cached by the wheelhouse's content; production builds do not use it.

ARG BASE
FROM ${BASE}
# The image's own user, which owns its Python environment (uid:gid).
ARG OWNER=0:0
COPY --chown=${OWNER} dist/*.whl /tmp/wheels/
# Group-writable from the start (umask 002, and fix-permissions where the image has it), so
# the image's own fix-permissions finds nothing to change in this layer and copies none of it.
RUN umask 002 && \
    python3 -m pip install --no-cache-dir --no-index --no-deps \
      $(ls /tmp/wheels/*.whl | grep -v '/himalia-[^/]*\.whl$') > /dev/null && \
    rm -rf /tmp/wheels && \
    if [ -n "${CONDA_DIR:-}" ] && command -v fix-permissions > /dev/null; then fix-permissions "${CONDA_DIR}"; fi
