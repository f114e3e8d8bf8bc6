package nodeimage

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/nfslab/nfslab/lab/hosttools"
	"github.com/nfslab/nfslab/lab/image"
)

const (
	ganeshaRecipe = "kind-ganesha-v1"
	// GaneshaArchiveFile is the docker-archive in GaneshaArchive's artefact directory.
	GaneshaArchiveFile = "ganesha.tar"
)

// GaneshaArchive returns a docker-archive that holds only the NFS server's image
// (GaneshaImage), building it into the cache if needed. nfslab's own node image carries that
// image already; a node image of the user's does not, so it is loaded into the nodes once the
// cluster exists (kind.ClusterConfig.SideLoad).
func GaneshaArchive(ctx context.Context, cache image.Cache, log *slog.Logger, progress func(string)) (string, error) {
	tools := []hosttools.Tool{{Command: "mmdebstrap", Package: "mmdebstrap"}, {Command: "tar", Package: "tar"}}
	if err := (hosttools.Set{For: "building the nfs-ganesha image", AptOptions: hosttools.NoRecommends, Tools: tools}).Check(); err != nil {
		return "", err
	}
	inputs := image.Inputs{
		"recipe":    ganeshaRecipe,
		"suite":     suite,
		"ganesha":   ganeshaInputs(),
		"env":       strings.Join(imageEnv(), " "),
		"hook-dirs": strings.Join(image.MergedUsrHookDirs(), ","),
	}
	dir, err := cache.Artefact(ctx, log, "kind-ganesha", inputs, func(ctx context.Context, dir string) error {
		if progress != nil {
			progress("nfs-ganesha image: building it alone, for a node image without it")
		}
		return buildGanesha(ctx, dir)
	})
	if err != nil {
		return "", fmt.Errorf("the nfs-ganesha image: %w", err)
	}
	return filepath.Join(dir, GaneshaArchiveFile), nil
}

// buildGanesha writes the NFS server's image into dir as a docker-archive, laying it out in a
// work directory it removes again.
func buildGanesha(ctx context.Context, dir string) error {
	work := filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o755); err != nil {
		return err
	}
	defer image.RemoveTree(work)
	img, err := ganeshaImage(ctx, work)
	if err != nil {
		return err
	}
	return WriteDockerArchive(ctx, filepath.Join(dir, GaneshaArchiveFile), work, []Image{img})
}
