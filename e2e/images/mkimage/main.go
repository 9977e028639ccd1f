// Command mkimage writes a single-layer linux/amd64 image archive (the
// `docker save` format, which `ctr images import` reads) from files of
// the host, without a Docker engine or a registry.
//
//	mkimage < spec.json
//
// The spec (JSON on stdin) names the image reference, the archive to
// write, the image config (entrypoint, cmd, env, working dir, user) and
// the layer's content: files copied from the host, symlinks, directories
// and small inline files. Every entry gets a fixed modification time, so
// the same inputs give the same image ID.
package main

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Spec describes one image.
type Spec struct {
	Ref        string   `json:"ref"` // e.g. registry.k8s.io/pause:3.10.2
	Out        string   `json:"out"` // archive path
	Entrypoint []string `json:"entrypoint"`
	Cmd        []string `json:"cmd"`
	Env        []string `json:"env"`
	WorkingDir string   `json:"workingDir"`
	User       string   `json:"user"`
	Files      []File   `json:"files"`
	Symlinks   []Link   `json:"symlinks"`
	Dirs       []string `json:"dirs"`
	Inline     []Inline `json:"inline"`
}

// File is a host file copied into the image (Mode 0: the host's mode).
type File struct {
	Src  string `json:"src"`
	Dst  string `json:"dst"`
	Mode int64  `json:"mode"`
}

// Link is a symlink in the image.
type Link struct {
	Dst    string `json:"dst"`
	Target string `json:"target"`
}

// Inline is a small file given by its content.
type Inline struct {
	Dst     string `json:"dst"`
	Content string `json:"content"`
	Mode    int64  `json:"mode"`
}

var epoch = time.Unix(0, 0)

func main() {
	var s Spec
	dec := json.NewDecoder(os.Stdin)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		fail("read spec: %v", err)
	}
	if err := build(s); err != nil {
		fail("%s: %v", s.Ref, err)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "mkimage: "+format+"\n", args...)
	os.Exit(1)
}

func build(s Spec) error {
	tag, err := name.NewTag(s.Ref)
	if err != nil {
		return err
	}
	layerTar := s.Out + ".layer.tar"
	defer os.Remove(layerTar)
	if err := writeLayer(layerTar, s); err != nil {
		return err
	}
	layer, err := tarball.LayerFromFile(layerTar)
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint, cf.Config.Cmd = s.Entrypoint, s.Cmd
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, s.Env...)
	cf.Config.WorkingDir, cf.Config.User = s.WorkingDir, s.User
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	tmp := s.Out + ".tmp"
	if err := tarball.WriteToFile(tmp, tag, img); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, s.Out)
}

// writeLayer writes the layer as an uncompressed tar, parents first.
func writeLayer(out string, s Spec) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	dirs := map[string]bool{}
	var addDir func(d string) error
	addDir = func(d string) error {
		d = strings.Trim(path.Clean("/"+d), "/")
		if d == "" || dirs[d] {
			return nil
		}
		if err := addDir(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		mode := int64(0o755)
		if d == "tmp" {
			mode = 0o1777
		}
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX})
	}
	rel := func(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }
	for _, d := range append([]string{"tmp", "etc"}, s.Dirs...) {
		if err := addDir(d); err != nil {
			return err
		}
	}
	files := append([]File(nil), s.Files...)
	sort.Slice(files, func(i, j int) bool { return files[i].Dst < files[j].Dst })
	for _, fl := range files {
		if err := addDir(path.Dir(rel(fl.Dst))); err != nil {
			return err
		}
		if err := addFile(tw, fl, rel(fl.Dst)); err != nil {
			return err
		}
	}
	for _, in := range s.Inline {
		if err := addDir(path.Dir(rel(in.Dst))); err != nil {
			return err
		}
		mode := in.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: rel(in.Dst), Mode: mode, Size: int64(len(in.Content)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := io.WriteString(tw, in.Content); err != nil {
			return err
		}
	}
	for _, l := range s.Symlinks {
		if err := addDir(path.Dir(rel(l.Dst))); err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: rel(l.Dst), Linkname: l.Target, Mode: 0o777, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return f.Close()
}

func addFile(tw *tar.Writer, fl File, dst string) error {
	src, err := os.Open(fl.Src)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat() // follows symlinks: the image gets the file itself
	if err != nil {
		return err
	}
	mode := fl.Mode
	if mode == 0 {
		mode = int64(st.Mode().Perm())
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dst, Mode: mode, Size: st.Size(), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
		return err
	}
	_, err = io.Copy(tw, src)
	return err
}
