package wal

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/fileutil"
)

// purge removes the oldest files with suffix in dir until at most keep are
// left. With locked set (WAL segments), it stops at the first file that is
// still locked, i.e. still needed by the open WAL; any other failure to
// lock a file is an error. Names sort by age: both WAL and snapshot names
// start with zero-padded hex sequence numbers.
func purge(dir, suffix string, keep int, locked bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("wal: purge %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), suffix) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for len(names) > keep {
		path := filepath.Join(dir, names[0])
		if locked {
			l, err := fileutil.TryLockFile(path, os.O_WRONLY, fileutil.PrivateFileMode)
			if errors.Is(err, fileutil.ErrLocked) {
				return nil // still in use by the open WAL
			}
			if err != nil {
				return fmt.Errorf("wal: purge %s: lock: %w", path, err)
			}
			defer l.Close()
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("wal: purge %s: %w", path, err)
		}
		names = names[1:]
	}
	return nil
}
