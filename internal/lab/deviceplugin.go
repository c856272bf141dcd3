package lab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	deviceplugin "k8s.io/kubelet/pkg/apis/deviceplugin/v1beta1"
)

// KVMResource is the extended resource through which KubeVirt hands /dev/kvm to
// launcher pods: virt-handler's device plugin advertises it on every node with a
// usable /dev/kvm, and a launcher pod of a VMI that is not emulated asks for one.
const KVMResource = "devices.kubevirt.io/kvm"

// kvmDevices is how many pods at once may have /dev/kvm: it is shared, so the count
// only bounds pods, as KubeVirt's 1000 does.
const kvmDevices = 110

// kvmPlugin is the lab's stand-in for virt-handler's KVM device plugin: it speaks
// kubelet's device plugin API on a socket in kubelet's device-plugins directory,
// advertises kvmDevices devices, and gives each container that is allocated one
// /dev/kvm, read-write. Who owns the device node inside the container is
// containerd's business: the node sets device_ownership_from_security_context, so it
// is the pod's runAsUser, as KubeVirt's non-root launchers need.
type kvmPlugin struct {
	deviceplugin.UnimplementedDevicePluginServer

	dir    string // kubelet's device-plugins directory, as the host sees it
	server *grpc.Server
	done   chan struct{} // closed by stop: ends ListAndWatch streams
	wg     sync.WaitGroup
}

const kvmSocket = "kubevirt-kvm.sock"

// startKVMPlugin serves the plugin and registers it with kubelet.
func startKVMPlugin(ctx context.Context, dir string) (*kvmPlugin, error) {
	p := &kvmPlugin{dir: dir, server: grpc.NewServer(), done: make(chan struct{})}
	deviceplugin.RegisterDevicePluginServer(p.server, p)
	socket := filepath.Join(dir, kvmSocket)
	if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	lis, err := net.Listen("unix", socket)
	if err != nil {
		return nil, fmt.Errorf("kvm device plugin: %w", err)
	}
	p.wg.Go(func() { _ = p.server.Serve(lis) })

	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "kubelet.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err == nil {
		defer conn.Close()
		_, err = deviceplugin.NewRegistrationClient(conn).Register(ctx, &deviceplugin.RegisterRequest{
			Version:      deviceplugin.Version,
			Endpoint:     kvmSocket,
			ResourceName: KVMResource,
		})
	}
	if err != nil {
		p.stop()
		return nil, fmt.Errorf("registering the kvm device plugin with kubelet: %w", err)
	}
	return p, nil
}

func (p *kvmPlugin) stop() {
	close(p.done)
	p.server.Stop()
	p.wg.Wait()
}

func (p *kvmPlugin) GetDevicePluginOptions(context.Context, *deviceplugin.Empty) (*deviceplugin.DevicePluginOptions, error) {
	return &deviceplugin.DevicePluginOptions{}, nil
}

// ListAndWatch sends the devices once: they never change while the lab runs.
func (p *kvmPlugin) ListAndWatch(_ *deviceplugin.Empty, stream grpc.ServerStreamingServer[deviceplugin.ListAndWatchResponse]) error {
	devs := make([]*deviceplugin.Device, kvmDevices)
	for i := range devs {
		devs[i] = &deviceplugin.Device{ID: "kvm" + strconv.Itoa(i), Health: deviceplugin.Healthy}
	}
	if err := stream.Send(&deviceplugin.ListAndWatchResponse{Devices: devs}); err != nil {
		return err
	}
	select {
	case <-stream.Context().Done():
	case <-p.done:
	}
	return nil
}

func (p *kvmPlugin) Allocate(_ context.Context, req *deviceplugin.AllocateRequest) (*deviceplugin.AllocateResponse, error) {
	resp := &deviceplugin.AllocateResponse{}
	for range req.ContainerRequests {
		resp.ContainerResponses = append(resp.ContainerResponses, &deviceplugin.ContainerAllocateResponse{
			Devices: []*deviceplugin.DeviceSpec{{HostPath: "/dev/kvm", ContainerPath: "/dev/kvm", Permissions: "rw"}},
		})
	}
	return resp, nil
}
