package main

import (
	"context"
	"os"
	"time"

	"github.com/nftproxy/nftproxy/e2e/lab"
)

// builds is what a run needs besides the cluster: binaries, e2e.test and
// ginkgo, the image archives the nodes import and, for the sonobuoy path,
// sonobuoy and its images.
type builds struct {
	bins            lab.Binaries
	e2eTest, ginkgo string
	images          lab.ImageSet
	kit             lab.SonobuoyKit
}

// buildAll builds what is missing for a run with o (each piece cached by
// version under the lab's cache dir; nftproxy's image is rebuilt into
// stage every time), one at a time: the machine is small. It starts no
// cluster and removes nothing, so `conformance build` can fill the caches
// (a fresh machine's first run, CI) while a cluster runs.
func buildAll(ctx context.Context, o options, root, stage string, tests bool) (b builds, err error) {
	cache, err := lab.DefaultCacheDir()
	if err != nil {
		return b, err
	}
	step("building what is missing (cache %s)", cache)
	t := time.Now()
	if b.bins, err = lab.EnsureClusterBinaries(ctx, root, cache, os.Stdout); err != nil {
		return b, err
	}
	if tests {
		if b.e2eTest, b.ginkgo, err = lab.EnsureE2EBinaries(ctx, root, cache, os.Stdout); err != nil {
			return b, err
		}
	}
	if b.images, err = lab.EnsureImages(ctx, root, cache, stage, os.Stdout); err != nil {
		return b, err
	}
	if o.proxy == "kube-proxy" {
		archive, err := lab.EnsureKubeProxyImage(ctx, root, cache, stage, os.Stdout)
		if err != nil {
			return b, err
		}
		b.images.Archives = append(b.images.Archives, archive)
	}
	if tests && o.via == "sonobuoy" {
		if b.kit, err = lab.EnsureSonobuoy(ctx, root, cache, stage, b.e2eTest, b.ginkgo, b.bins.Kubectl, os.Stdout); err != nil {
			return b, err
		}
		b.images.Archives = append(b.images.Archives, b.kit.Archives...)
	}
	step("builds ready in %s", time.Since(t).Round(time.Second))
	return b, nil
}

// buildOnly is `conformance build`: the builds of a run with o's -proxy
// and -via, without a cluster. The nftproxy image it builds is thrown
// away (every run rebuilds it from the working tree).
func buildOnly(o options) error {
	begin := time.Now()
	ctx, cancel, root, err := prepare(o)
	if err != nil {
		return err
	}
	defer cancel()
	stage, err := os.MkdirTemp("", prefix+"build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stage)
	if _, err := buildAll(ctx, o, root, stage, true); err != nil {
		return err
	}
	step("done in %s", time.Since(begin).Round(time.Second))
	return nil
}
