// Package images builds small multi-architecture test images with buildah,
// without Docker and without pulling anything from the Internet: a static
// busybox per architecture (Debian's busybox-static package) on top of
// scratch, pushed as one manifest list. Foreign architectures run under
// qemu-user-static binfmt emulation.
//
// Every Storage is private to one test (its own graph root and run root, vfs
// driver), so tests never see or disturb other buildah users on the machine.
package images

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// Storage is a private containers-storage for buildah: pass Env() to every
// buildah (or script running buildah) of the test.
type Storage struct {
	Dir string
	env []string
}

// NewStorage creates a vfs storage under a temporary directory of t. extraEnv
// is added to Env(), for example registry.Registry.Env() so that buildah
// trusts the test registry.
func NewStorage(t testing.TB, extraEnv ...string) *Storage {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "storage.conf")
	content := fmt.Sprintf("[storage]\ndriver = \"vfs\"\ngraphroot = %q\nrunroot = %q\n",
		filepath.Join(dir, "root"), filepath.Join(dir, "runroot"))
	if err := os.WriteFile(conf, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"CONTAINERS_STORAGE_CONF=" + conf,
		"STORAGE_DRIVER=vfs",
		"BUILDAH_ISOLATION=chroot",
	}
	env = append(env, extraEnv...)
	return &Storage{Dir: dir, env: env}
}

// Env is the environment selecting this storage (CONTAINERS_STORAGE_CONF,
// STORAGE_DRIVER=vfs, BUILDAH_ISOLATION=chroot) plus NewStorage's extraEnv.
func (s *Storage) Env() []string { return append([]string(nil), s.env...) }

// Buildah runs buildah with this storage and returns its standard output.
func (s *Storage) Buildah(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command("buildah", args...)
	cmd.Env = append(os.Environ(), s.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("buildah %s: %v\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String()
}

var elfMachine = map[string]elf.Machine{
	"amd64":   elf.EM_X86_64,
	"arm64":   elf.EM_AARCH64,
	"ppc64le": elf.EM_PPC64,
	"s390x":   elf.EM_S390,
}

// Busybox returns the path of a statically linked busybox for arch
// ("amd64", "arm64", ...). The host's architecture comes from the installed
// busybox-static package (/bin/busybox); another one is fetched once with
//
//	apt-get download busybox-static:<arch>   (needs dpkg --add-architecture <arch>)
//
// and unpacked under the user cache directory. Set TEST_BUSYBOX_<ARCH>
// (e.g. TEST_BUSYBOX_ARM64) to use a binary of your own.
func Busybox(t testing.TB, arch string) string {
	t.Helper()
	if p := os.Getenv("TEST_BUSYBOX_" + strings.ToUpper(arch)); p != "" {
		checkStatic(t, p, arch)
		return p
	}
	if arch == runtime.GOARCH {
		for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
			if isStatic(p, arch) == nil {
				return p
			}
		}
		t.Fatalf("images: no static busybox for %s: apt-get install busybox-static", arch)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "multiarch-build-operator", "busybox-static-"+arch)
	bin := filepath.Join(dir, "bin", "busybox")
	if isStatic(bin, arch) == nil {
		return bin
	}
	tmp := t.TempDir()
	dl := exec.Command("apt-get", "download", "busybox-static:"+arch)
	dl.Dir = tmp
	if out, err := dl.CombinedOutput(); err != nil {
		t.Fatalf("images: apt-get download busybox-static:%s: %v\n%s\n(run: dpkg --add-architecture %s && apt-get update)", arch, err, out, arch)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "busybox-static_*.deb"))
	if len(debs) != 1 {
		t.Fatalf("images: apt-get download left %d busybox-static packages in %s", len(debs), tmp)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	unpack := filepath.Join(tmp, "x")
	if out, err := exec.Command("dpkg-deb", "-x", debs[0], unpack).CombinedOutput(); err != nil {
		t.Fatalf("images: dpkg-deb -x %s: %v\n%s", debs[0], err, out)
	}
	_ = os.RemoveAll(dir)
	if err := os.Rename(unpack, dir); err != nil {
		t.Fatal(err)
	}
	checkStatic(t, bin, arch)
	return bin
}

func checkStatic(t testing.TB, path, arch string) {
	t.Helper()
	if err := isStatic(path, arch); err != nil {
		t.Fatalf("images: %v", err)
	}
}

// isStatic checks that path is a statically linked ELF executable for arch.
func isStatic(path, arch string) error {
	f, err := elf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if want, ok := elfMachine[arch]; !ok || f.Machine != want {
		return fmt.Errorf("%s is for %s, not %s", path, f.Machine, arch)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%s is dynamically linked", path)
		}
	}
	return nil
}

// applets are linked to busybox in the base image: enough for RUN lines of
// test Containerfiles.
var applets = []string{
	"sh", "ls", "cat", "echo", "mkdir", "cp", "mv", "rm", "uname", "env", "true", "false",
	"test", "[", "printf", "sed", "grep", "wc", "tar", "chmod", "ln", "sleep", "touch", "head", "id", "find",
}

// BuildBusyboxBase builds FROM scratch an image holding a static busybox (as
// /bin/busybox, /bin/sh and common applets) for each platform
// ("linux/amd64", "linux/arm64", ...), pushes them as one manifest list to
// ref (for example 127.0.0.1:5000/base/busybox:latest) and returns the list's
// digest. s's environment must let buildah reach the registry.
func BuildBusyboxBase(t testing.TB, s *Storage, ref string, platforms []string) string {
	t.Helper()
	list := "localhost/test-busybox-base-list"
	s.Buildah(t, "manifest", "create", list)
	for _, platform := range platforms {
		arch := platform[strings.Index(platform, "/")+1:]
		ctx := t.TempDir()
		bin := filepath.Join(ctx, "rootfs", "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(ctx, "rootfs", "tmp"), 0o1777); err != nil {
			t.Fatal(err)
		}
		data, err := os.ReadFile(Busybox(t, arch))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(bin, "busybox"), data, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, a := range applets {
			if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil {
				t.Fatal(err)
			}
		}
		cf := "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\nCMD [\"/bin/sh\"]\n"
		if err := os.WriteFile(filepath.Join(ctx, "Containerfile"), []byte(cf), 0o644); err != nil {
			t.Fatal(err)
		}
		tag := "localhost/test-busybox-base:" + arch
		s.Buildah(t, "build", "--quiet", "--platform", platform, "--tag", tag, "--file", filepath.Join(ctx, "Containerfile"), ctx)
		s.Buildah(t, "manifest", "add", list, tag)
	}
	digestFile := filepath.Join(t.TempDir(), "digest")
	s.Buildah(t, "manifest", "push", "--quiet", "--all", "--digestfile", digestFile, list, "docker://"+ref)
	d, err := os.ReadFile(digestFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(d))
}
