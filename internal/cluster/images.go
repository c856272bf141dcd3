package cluster

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// containerd's root, which holds its images, outlives the node: importing the
// launcher and collector images anew takes half a minute, an unchanged image none.
// Everything else of a node's containerd (its state, its pods' sandboxes and
// containers) must not outlive it, so the next node starts by removing what an
// earlier one left in that root (removeStalePods), through the CRI as kubelet would.

// cri connects to containerd's CRI services.
func (c *Cluster) cri() (*grpc.ClientConn, error) {
	return grpc.NewClient("unix://"+c.containerdSocket(), grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// criReady says whether containerd serves the CRI.
func (c *Cluster) criReady(ctx context.Context) bool {
	conn, err := c.cri()
	if err != nil {
		return false
	}
	defer conn.Close()
	_, err = runtimeapi.NewRuntimeServiceClient(conn).Version(ctx, &runtimeapi.VersionRequest{})
	return err == nil
}

// removeStalePods stops and removes every pod sandbox containerd knows, with their
// containers: at this point, before kubelet, they can only be an earlier node's.
func (c *Cluster) removeStalePods(ctx context.Context) error {
	conn, err := c.cri()
	if err != nil {
		return err
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("listing the pods an earlier node left: %w", err)
	}
	for _, sb := range resp.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			return fmt.Errorf("stopping pod %s/%s an earlier node left: %w", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id}); err != nil {
			return fmt.Errorf("removing pod %s/%s an earlier node left: %w", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err)
		}
	}
	if n := len(resp.Items); n > 0 {
		c.progress("removed %d pods an earlier node left in containerd", n)
	}
	return nil
}

// importImages imports each archive whose image containerd does not hold already.
func (c *Cluster) importImages(ctx context.Context, archives []string) error {
	conn, err := c.cri()
	if err != nil {
		return err
	}
	defer conn.Close()
	images := runtimeapi.NewImageServiceClient(conn)
	for _, archive := range archives {
		name, id, err := archiveImage(archive)
		if err != nil {
			return err
		}
		st, err := images.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: name}})
		if err != nil {
			return fmt.Errorf("asking containerd for %s: %w", name, err)
		}
		if st.Image != nil && st.Image.Id == id {
			continue
		}
		c.progress("importing %s (%s)", name, filepath.Base(archive))
		if err := c.ImportImage(ctx, archive); err != nil {
			return err
		}
	}
	return nil
}

// archiveImage reads the name and ID (its config's digest, as the CRI reports an
// image's ID) of the one image in a docker-archive.
func archiveImage(archive string) (name, id string, err error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	tr := tar.NewReader(f) // skips the layers by seeking: f is a file
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", "", fmt.Errorf("%s: no manifest.json: not a docker-archive", archive)
		}
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", archive, err)
		}
		if hdr.Name != "manifest.json" {
			continue
		}
		var manifest []struct {
			Config   string
			RepoTags []string
		}
		if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
			return "", "", fmt.Errorf("%s: manifest.json: %w", archive, err)
		}
		if len(manifest) != 1 || len(manifest[0].RepoTags) == 0 {
			return "", "", fmt.Errorf("%s: want one tagged image, manifest.json has %+v", archive, manifest)
		}
		return manifest[0].RepoTags[0], "sha256:" + strings.TrimSuffix(manifest[0].Config, ".json"), nil
	}
}
