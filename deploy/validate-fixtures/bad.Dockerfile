# Must FAIL validation (hadolint errors): relative WORKDIR, cd in RUN.
FROM debian:bookworm-slim
WORKDIR src
RUN cd /tmp && echo nope
