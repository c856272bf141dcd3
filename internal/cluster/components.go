package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
)

// The node's daemons, in the order Start runs them, each with the configuration a
// kubeadm-made single-node cluster would give it, minus what this machine cannot do
// (the comments say what and why).

func (c *Cluster) startEtcd() error {
	_, err := c.startProcess("etcd", nil, c.opts.Etcd,
		"--name=node",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls=http://127.0.0.1:2379",
		"--advertise-client-urls=http://127.0.0.1:2379",
		"--listen-peer-urls=http://127.0.0.1:2380",
		"--initial-advertise-peer-urls=http://127.0.0.1:2380",
		"--initial-cluster=node=http://127.0.0.1:2380",
	)
	return err
}

func (c *Cluster) startAPIServer() error {
	serving, servingKey, err := c.pki.issue("kube-apiserver", identity{
		commonName: "kube-apiserver",
		dnsNames:   []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"},
		ips:        []net.IP{net.ParseIP(NodeIP), net.ParseIP(serviceIP), net.ParseIP("127.0.0.1")},
	})
	if err != nil {
		return err
	}
	kubeletClient, kubeletClientKey, err := c.pki.issue("kube-apiserver-kubelet-client", identity{
		commonName: "kube-apiserver-kubelet-client", organizations: []string{"system:masters"},
	})
	if err != nil {
		return err
	}
	saPub, saKey, err := c.pki.serviceAccountKey()
	if err != nil {
		return err
	}
	_, err = c.startProcess("kube-apiserver", nil, c.bin("kube-apiserver"),
		"--etcd-servers=http://127.0.0.1:2379",
		"--advertise-address="+NodeIP,
		"--secure-port="+apiPort,
		"--tls-cert-file="+serving,
		"--tls-private-key-file="+servingKey,
		"--client-ca-file="+c.pki.caPath(),
		"--kubelet-client-certificate="+kubeletClient,
		"--kubelet-client-key="+kubeletClientKey,
		// Reach kubelet (logs, exec) at the node's address: its name is in no DNS.
		"--kubelet-preferred-address-types=InternalIP",
		"--kubelet-certificate-authority="+c.pki.caPath(),
		"--service-cluster-ip-range="+serviceCIDR,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+saPub,
		"--service-account-signing-key-file="+saKey,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--profiling=false",
	)
	return err
}

func (c *Cluster) startControllerManager() error {
	_, err := c.startProcess("kube-controller-manager", nil, c.bin("kube-controller-manager"),
		"--kubeconfig="+c.adminKubeconfig,
		"--authentication-kubeconfig="+c.adminKubeconfig,
		"--authorization-kubeconfig="+c.adminKubeconfig,
		// Signs the legacy tokens and publishes kube-root-ca.crt into every
		// namespace: in-cluster clients verify the API server with it.
		"--service-account-private-key-file="+filepath.Join(c.pki.dir, "sa.key"),
		"--root-ca-file="+c.pki.caPath(),
		"--use-service-account-credentials",
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
	)
	return err
}

func (c *Cluster) startScheduler() error {
	_, err := c.startProcess("kube-scheduler", nil, c.bin("kube-scheduler"),
		"--kubeconfig="+c.adminKubeconfig,
		"--authentication-kubeconfig="+c.adminKubeconfig,
		"--authorization-kubeconfig="+c.adminKubeconfig,
		"--leader-elect=false",
		"--bind-address=127.0.0.1",
	)
	return err
}

// containerdSocket is where containerd serves CRI and its own API; it is in the
// state directory, on the host's file system, so ctr on the host reaches it too.
func (c *Cluster) containerdSocket() string {
	return filepath.Join(c.dir, "containerd", "containerd.sock")
}

func (c *Cluster) startContainerd() error {
	dir := filepath.Join(c.dir, "containerd")
	cni := filepath.Join(c.dir, "cni")
	for _, d := range []string{dir, filepath.Join(cni, "net.d"), filepath.Join(cni, "ipam")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	// One bridge for the node's pods, host-local addresses from PodCIDR, and
	// masquerading of what leaves the node.
	conflist := fmt.Sprintf(`{
  "cniVersion": "1.0.0",
  "name": "node",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}},
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, filepath.Join(cni, "ipam"), PodCIDR)
	if err := os.WriteFile(filepath.Join(cni, "net.d", "10-node.conflist"), []byte(conflist), 0o644); err != nil {
		return err
	}
	config := fmt.Sprintf(`version = 4
root = %[1]q
state = %[2]q
# Nothing from the host's /etc/containerd.
imports = []

[plugins]
  [plugins.'io.containerd.server.v1.grpc']
    address = %[3]q
  [plugins.'io.containerd.server.v1.ttrpc']
    address = %[10]q
  [plugins.'io.containerd.internal.v1.opt']
    path = %[4]q
  # NRI would listen below /var/run/nri; nothing here uses it.
  [plugins.'io.containerd.nri.v1.nri']
    disable = true
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = %[5]q
  [plugins.'io.containerd.cri.v1.runtime']
    # root here lacks CAP_SYS_RESOURCE: without this, runc fails every sandbox
    # trying to lower its oom_score_adj ("can't get final child's PID from pipe").
    restrict_oom_score_adj = true
    # Devices (/dev/kvm from the device plugin) belong to the container's
    # runAsUser, as KubeVirt's non-root launchers need.
    device_ownership_from_security_context = true
    netns_mounts_under_state_dir = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = %[6]q
        Root = %[7]q
        SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = [%[8]q]
      conf_dir = %[9]q
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
`,
		c.opts.ImageStore, filepath.Join(dir, "state"), c.containerdSocket(),
		filepath.Join(dir, "opt"), PauseImage, c.opts.Runc, filepath.Join(dir, "runc"),
		c.opts.CNIPlugins, filepath.Join(cni, "net.d"), c.containerdSocket()+".ttrpc")
	configPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	// containerd finds its shim on PATH.
	path := "PATH=" + c.opts.ContainerdAssets + ":" + os.Getenv("PATH")
	_, err := c.startProcess("containerd", []string{path}, filepath.Join(c.opts.ContainerdAssets, "containerd"), "--config", configPath)
	return err
}

func (c *Cluster) startKubelet() error {
	// The identity the Node authorizer and NodeRestriction expect of this node's kubelet.
	if _, _, err := c.pki.issue("kubelet", identity{
		commonName: "system:node:" + c.opts.NodeName, organizations: []string{"system:nodes"},
	}); err != nil {
		return err
	}
	kubeconfig, err := c.pki.kubeconfig("kubelet", c.server())
	if err != nil {
		return err
	}
	serving, servingKey, err := c.pki.issue("kubelet-serving", identity{
		commonName: c.opts.NodeName, dnsNames: []string{c.opts.NodeName}, ips: []net.IP{net.ParseIP(NodeIP)},
	})
	if err != nil {
		return err
	}
	config := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://%[1]s
# cgroupfs: there is no systemd here. Pods go below the node's cgroup, where
# teardown finds them.
cgroupDriver: cgroupfs
cgroupRoot: /%[2]s
# This machine's cgroups are v1, which kubelet 1.36 refuses unless told otherwise.
failCgroupV1: false
failSwapOn: false
# Lowering an oom_score_adj needs CAP_SYS_RESOURCE, which root lacks here.
oomScoreAdj: 0
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: %[3]q
authorization:
  mode: Webhook
tlsCertFile: %[4]q
tlsPrivateKeyFile: %[5]q
clusterDomain: cluster.local
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
serializeImagePulls: false
# The images are imported, never pulled: never collect them, and evict nothing on a
# machine whose disk may be nearly full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 50Mi
  nodefs.available: "0%%"
  imagefs.available: "0%%"
  nodefs.inodesFree: "0%%"
`, c.containerdSocket(), cgroupName, c.pki.caPath(), serving, servingKey)
	configPath := filepath.Join(c.dir, "kubelet.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	_, err = c.startProcess("kubelet", nil, c.bin("kubelet"),
		"--config="+configPath,
		"--kubeconfig="+kubeconfig,
		"--hostname-override="+c.opts.NodeName,
		"--node-ip="+NodeIP,
	)
	return err
}

// kubeProxyHealthz is where kube-proxy says whether its rules are in place.
const kubeProxyHealthz = NodeIP + ":10256"

func (c *Cluster) startKubeProxy() error {
	config := fmt.Sprintf(`apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: %[1]q
hostnameOverride: %[2]q
mode: iptables
clusterCIDR: %[3]q
healthzBindAddress: %[4]q
metricsBindAddress: 127.0.0.1:10249
# Lowering an oom_score_adj needs CAP_SYS_RESOURCE, which root lacks here.
oomScoreAdj: 0
# The conntrack table's size and timeouts are host-wide settings: leave them.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
`, c.adminKubeconfig, c.opts.NodeName, PodCIDR, kubeProxyHealthz)
	configPath := filepath.Join(c.dir, "kube-proxy.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		return err
	}
	_, err := c.startProcess("kube-proxy", nil, c.bin("kube-proxy"), "--config="+configPath)
	return err
}

// ImportImage loads a docker-archive (what `buildah push ... docker-archive:` and
// `docker save` write) into the node's containerd, where pods find it without a
// registry.
func (c *Cluster) ImportImage(ctx context.Context, archive string) error {
	cmd := []string{"--address", c.containerdSocket(), "--namespace", "k8s.io", "images", "import", archive}
	if err := run(ctx, filepath.Join(c.opts.ContainerdAssets, "ctr"), cmd...); err != nil {
		return fmt.Errorf("importing %s: %w", archive, err)
	}
	return nil
}

func (c *Cluster) bin(name string) string { return filepath.Join(c.opts.KubeAssets, name) }

func (c *Cluster) server() string { return "https://" + NodeIP + ":" + apiPort }
