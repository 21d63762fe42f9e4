package ociimage

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// maxFile bounds what Files reads of one entry: 256 MiB, about four times
// meshinject's static binary.
const maxFile = 256 << 20

// File is an entry of an image's layers.
type File struct {
	// Mode holds the permission bits; UID and GID the owner.
	Mode     int64
	UID, GID int
	// Content is a regular file's bytes (nil for a folder).
	Content []byte
}

// Files returns the entries of img's layers by path, without a leading
// "./" and with folders ending in "/"; a later layer's entry replaces an
// earlier one's.
func Files(img v1.Image) (map[string]File, error) {
	layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	files := map[string]File{}
	for _, l := range layers {
		if err := readLayer(l, files); err != nil {
			return nil, err
		}
	}
	return files, nil
}

func readLayer(l v1.Layer, files map[string]File) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer func() { _ = rc.Close() }() // read only
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		f := File{Mode: h.Mode, UID: h.Uid, GID: h.Gid}
		if h.Typeflag == tar.TypeReg {
			if h.Size > maxFile {
				return fmt.Errorf("%s: %d bytes, more than %d", h.Name, h.Size, maxFile)
			}
			if f.Content, err = io.ReadAll(io.LimitReader(tr, maxFile)); err != nil {
				return err
			}
		}
		files[strings.TrimPrefix(h.Name, "./")] = f
	}
}
