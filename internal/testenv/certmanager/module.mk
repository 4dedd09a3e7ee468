# cert-manager's own controllers and cainjector, in-process against envtest
# (a separate module: cert-manager's controller packages stay out of the
# guard's go.mod). Needs bin/ from `make testbin`.
TEST_MODULES += internal/testenv/certmanager
