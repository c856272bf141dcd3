package kube

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: a
  cluster: {server: "https://127.0.0.1:6443"}
- name: b
  cluster: {server: "https://127.0.0.2:6443"}
contexts:
- name: a
  context: {cluster: a, user: u}
- name: lab
  context: {cluster: b, user: u}
current-context: a
users:
- name: u
  user: {token: t}
`

func TestKubeConfigHonoursContext(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", path)
	for ctx, want := range map[string]string{"": "https://127.0.0.1:6443", "lab": "https://127.0.0.2:6443"} {
		cfg, err := RESTConfig(AuthKubeConfig, ctx)
		if err != nil {
			t.Fatalf("context %q: %v", ctx, err)
		}
		if cfg.Host != want {
			t.Errorf("context %q: host %s, want %s", ctx, cfg.Host, want)
		}
	}
	if _, err := RESTConfig(AuthKubeConfig, "no-such-context"); err == nil {
		t.Error("an unknown context was accepted")
	}
}

func TestServiceAccountOutsideAPodSaysWhatToDo(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	_, err := RESTConfig(AuthServiceAccount, "")
	if err == nil || !strings.Contains(err.Error(), string(AuthKubeConfig)) {
		t.Fatalf("RESTConfig(serviceAccount) outside a pod = %v, want an error pointing to %s", err, AuthKubeConfig)
	}
}

func TestNoneUsesTheInClusterAddress(t *testing.T) {
	t.Setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
	t.Setenv("KUBERNETES_SERVICE_PORT", "443")
	cfg, err := RESTConfig(AuthNone, "")
	if err != nil || cfg.Host != "https://[fd00::1]:443" || cfg.BearerToken != "" {
		t.Fatalf("RESTConfig(none) = %+v, %v", cfg, err)
	}
	if _, err := RESTConfig("token", ""); err == nil {
		t.Error("an unknown auth type was accepted")
	}
}
