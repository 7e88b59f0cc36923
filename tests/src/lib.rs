//! Helpers shared by the end-to-end tests: where the repository and the pinned test tools are.
