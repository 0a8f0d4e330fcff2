//go:build e2e

package e2e

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	tektonv1 "github.com/tektoncd/pipeline/pkg/apis/pipeline/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/api/v1alpha1"
	"github.com/multiarch-build/multiarch-build-operator/internal/pipeline"
	"github.com/multiarch-build/multiarch-build-operator/internal/storage"
)

// The Java sample: a main class printing the JVM's os.arch and a computed
// value; its pom uses only plugins Debian packages (in the local Maven
// image's /usr/share/maven-repo), at versions Debian has.
const (
	mavenPom = `<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0"
         xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
         xsi:schemaLocation="http://maven.apache.org/POM/4.0.0 https://maven.apache.org/xsd/maven-4.0.0.xsd">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.multiarch.e2e</groupId>
  <artifactId>hello</artifactId>
  <version>1.0.0</version>
  <packaging>jar</packaging>
  <properties>
    <maven.compiler.release>17</maven.compiler.release>
    <project.build.sourceEncoding>UTF-8</project.build.sourceEncoding>
    <project.build.outputTimestamp>2024-01-01T00:00:00Z</project.build.outputTimestamp>
  </properties>
  <build>
    <plugins>
      <plugin><artifactId>maven-resources-plugin</artifactId><version>3.3.0</version></plugin>
      <plugin><artifactId>maven-compiler-plugin</artifactId><version>3.10.1</version></plugin>
      <plugin><artifactId>maven-surefire-plugin</artifactId><version>2.22.3</version></plugin>
      <plugin>
        <artifactId>maven-jar-plugin</artifactId>
        <version>3.3.0</version>
        <configuration>
          <archive><manifest><mainClass>io.multiarch.hello.Hello</mainClass></manifest></archive>
        </configuration>
      </plugin>
    </plugins>
  </build>
</project>
`
	mavenMain = `package io.multiarch.hello;

public class Hello {
    public static void main(String[] args) {
        long sum = 0;
        for (int i = 1; i <= 1000; i++) {
            sum += (long) i * i;
        }
        System.out.println("hello from " + System.getProperty("os.arch") + ", sum of squares 1..1000 = " + sum);
    }
}
`
	mavenJar    = "app/hello.jar"
	mavenOutput = "sum of squares 1..1000 = 333833500"
)

// TestMavenBuild: Maven for real. The local Maven image (Debian's maven,
// openjdk-17-jdk-headless and packaged plugins, offline) compiles the sample
// once; each build-<arch> packages the same jar onto the JRE image of its
// architecture and runs it there (RUN java -jar; the arm64 node runs the
// arm64 JRE through qemu-user). The jar is the same file in both images. A
// second build of the same commit (the rebuild annotation) fetches nothing:
// the Maven repository the first left on the shared volume is not changed by
// a single file.
func TestMavenBuild(t *testing.T) {
	t.Parallel()
	if cfg.MavenImage == "" || cfg.JREImage == "" {
		t.Fatalf("MAB_MAVEN_IMAGE=%q MAB_JRE_IMAGE=%q in the cluster env: run hack/cluster/up.sh (it builds and loads them)", cfg.MavenImage, cfg.JREImage)
	}
	url := gitRepo(t, "e2e-maven", map[string]string{
		"pom.xml": mavenPom,
		"src/main/java/io/multiarch/hello/Hello.java": mavenMain,
		"Containerfile": "FROM " + cfg.JREImage + "\n" +
			"COPY target/hello-1.0.0.jar /" + mavenJar + "\n" +
			"RUN java -jar /" + mavenJar + " > /app/ran-at-build.txt && cat /app/ran-at-build.txt\n" +
			"CMD [\"java\", \"-jar\", \"/" + mavenJar + "\"]\n",
	})
	ns := namespace(t, "e2e-maven")
	b := newBuild(ns, "maven", url, "e2e/maven")
	b.Spec.Strategy.Type = v1alpha1.StrategyMaven
	b.Spec.Timeout = "30m"
	// spec.strategy.maven unset: the operator's --maven-image (the local
	// Maven image) and the default goals
	res := runBuild(t, b, v1alpha1.PhaseSucceeded)
	checkReady(t, res.build)
	mvnLog := mavenTaskLog(t, res, cfg.MavenImage)
	for _, want := range []string{"maven-compiler-plugin:3.10.1:compile", "maven-jar-plugin:3.3.0:jar", "BUILD SUCCESS"} {
		if !strings.Contains(mvnLog, want) {
			t.Errorf("the maven step's log lacks %q:\n%s", want, mvnLog)
		}
	}
	index := checkPushed(t, res)
	jarDigest := map[string]string{}
	jarLayer := map[string]string{}
	for arch, img := range index {
		javaBin := "usr/lib/jvm/java-17-openjdk-" + arch + "/bin/java"
		files, err := imageFiles(context.Background(), repoOf(b), img, javaBin, "app/ran-at-build.txt")
		if err != nil {
			t.Fatal(err)
		}
		if got := elfMachine(files[javaBin]); got != elfFor[arch] {
			t.Errorf("%s image: /%s (the JRE) is %s, want %s", arch, javaBin, got, elfFor[arch])
		}
		ran := strings.TrimSpace(string(files["app/ran-at-build.txt"]))
		wantArch := map[string]string{"amd64": "amd64", "arm64": "aarch64"}[arch]
		if ran != "hello from "+wantArch+", "+mavenOutput {
			t.Errorf("%s image: java -jar in RUN printed %q, want os.arch %s and %q", arch, ran, wantArch, mavenOutput)
		}
		sum, layer, err := fileDigest(context.Background(), repoOf(b), img, mavenJar)
		if err != nil {
			t.Fatal(err)
		}
		jarDigest[arch], jarLayer[arch] = sum, layer
		t.Logf("%s image: /%s is %s; RUN java -jar printed %q; /%s sha256:%s (layer %s)", arch, javaBin, elfMachine(files[javaBin]), ran, mavenJar, sum, layer)
	}
	if jarDigest["amd64"] == "" || jarDigest["amd64"] != jarDigest["arm64"] {
		t.Errorf("/%s differs between the images (compiled once, it must not): %v", mavenJar, jarDigest)
	} else {
		t.Logf("/%s is byte-identical in the amd64 and arm64 images: sha256:%s (COPY layer amd64 %s, arm64 %s)", mavenJar, jarDigest["amd64"], jarLayer["amd64"], jarLayer["arm64"])
	}

	// Second build, same commit and spec (the rebuild annotation), on the
	// repository the first build left in the shared volume's cache. (Not
	// goals with --offline: a spec.strategy.maven naming the local image is
	// refused by the cluster's image policy, config/policy, and one without
	// an image gets the CRD's default image.)
	m2 := filepath.Join(volumeRoot(t, res.build), "cache", "m2", "repository")
	before := treeState(t, m2)
	if len(before) == 0 {
		t.Fatalf("the first build left no Maven repository in %s", m2)
	}
	t.Logf("Maven repository on the shared volume after the first build: %d files (%s)", len(before), m2)
	cur := &v1alpha1.MultiArchBuild{}
	if err := kc.Get(context.Background(), client.ObjectKeyFromObject(res.build), cur); err != nil {
		t.Fatal(err)
	}
	if cur.Annotations == nil {
		cur.Annotations = map[string]string{}
	}
	cur.Annotations[v1alpha1.RebuildAnnotation] = "second"
	start := time.Now()
	if err := kc.Update(context.Background(), cur); err != nil {
		t.Fatal(err)
	}
	res2 := waitBuild(t, cur, res.build.Status.LatestRun.Name, start, v1alpha1.PhaseSucceeded)
	if res2.build.Status.Revision != res.build.Status.Revision {
		t.Errorf("second build built %s, the first %s: want the same commit", res2.build.Status.Revision, res.build.Status.Revision)
	}
	log2 := mavenTaskLog(t, res2, cfg.MavenImage)
	// (the step runs mvn --no-transfer-progress: the repository's files are
	// the proof, the log only a second look)
	if !strings.Contains(log2, "BUILD SUCCESS") || strings.Contains(log2, "Downloading") || strings.Contains(log2, "Downloaded") {
		t.Errorf("second maven step: want BUILD SUCCESS and no Downloading:\n%s", log2)
	}
	after := treeState(t, m2)
	var changed []string
	for p, st := range after {
		if before[p] != st {
			changed = append(changed, p)
		}
	}
	sort.Strings(changed)
	if len(changed) > 0 {
		t.Errorf("the second build added or changed %d files of the Maven repository: %v", len(changed), changed)
	}
	index2 := checkPushed(t, res2)
	for arch, img := range index2 {
		sum, _, err := fileDigest(context.Background(), repoOf(b), img, mavenJar)
		if err != nil {
			t.Fatal(err)
		}
		if sum != jarDigest[arch] {
			t.Errorf("%s image of the second build: /%s sha256:%s, the first build's %s", arch, mavenJar, sum, jarDigest[arch])
		}
	}
	t.Logf("second build (same commit %s, run %s): Succeeded in %.0fs, the Maven repository unchanged (%d files, same sizes and times), same jar; list digest %s (first %s, equal: %v)",
		res2.build.Status.Revision, res2.build.Status.LatestRun.Name, res2.wall.Seconds(), len(after), res2.build.Status.Digest, res.build.Status.Digest,
		res2.build.Status.Digest == res.build.Status.Digest)
}

func checkReady(t *testing.T, b *v1alpha1.MultiArchBuild) {
	t.Helper()
	for _, c := range b.Status.Conditions {
		if c.Type == v1alpha1.ConditionReady {
			if c.Status != metav1.ConditionTrue {
				t.Errorf("Ready = %s (%s: %s), want True", c.Status, c.Reason, c.Message)
			}
			return
		}
	}
	t.Errorf("no Ready condition: %+v", b.Status.Conditions)
}

// mavenTaskLog returns the log of the run's maven task, checking it ran image.
func mavenTaskLog(t *testing.T, res result, image string) string {
	t.Helper()
	for _, tr := range res.taskRuns {
		if tr.Labels["tekton.dev/pipelineTask"] != pipeline.TaskMaven {
			continue
		}
		pod, err := cs.CoreV1().Pods(tr.Namespace).Get(context.Background(), tr.Status.PodName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range pod.Spec.Containers {
			if c.Name == "step-maven" && c.Image != image {
				t.Errorf("the maven step ran %s, want %s (the operator's --maven-image)", c.Image, image)
			}
		}
		logs := podLogs(t, tr.Namespace, tr.Status.PodName)
		t.Logf("maven task ran on node %s:\n%s", pod.Spec.NodeName, tail(logs, 30))
		return logs
	}
	t.Fatalf("no TaskRun of the maven task in %s", res.build.Status.LatestRun.Name)
	return ""
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// waitBuild waits for a run other than prevRun to end in a final phase, as
// runBuild does for a new build.
func waitBuild(t *testing.T, b *v1alpha1.MultiArchBuild, prevRun string, start time.Time, want v1alpha1.Phase) result {
	t.Helper()
	ctx := context.Background()
	key := client.ObjectKeyFromObject(b)
	last := ""
	for {
		cur := &v1alpha1.MultiArchBuild{}
		if err := kc.Get(ctx, key, cur); err != nil {
			t.Fatal(err)
		}
		line := string(cur.Status.Phase)
		for _, p := range cur.Status.Platforms {
			line += fmt.Sprintf(" %s=%s", p.Platform, p.State)
		}
		if line != last {
			t.Logf("%6.1fs %s (generation %d): %s", time.Since(start).Seconds(), key, cur.Generation, line)
			last = line
		}
		if cur.Status.ObservedGeneration == cur.Generation && cur.Status.LatestRun != nil && cur.Status.LatestRun.Name != prevRun &&
			(cur.Status.Phase == v1alpha1.PhaseSucceeded || cur.Status.Phase == v1alpha1.PhaseFailed) {
			b = cur
			break
		}
		if time.Since(start) > 25*time.Minute {
			t.Fatalf("%s still %s after %s", key, cur.Status.Phase, time.Since(start))
		}
		time.Sleep(time.Second)
	}
	res := result{build: b, wall: time.Since(start)}
	if b.Status.Phase != want {
		t.Fatalf("%s ended %s, want %s; conditions: %+v", key, b.Status.Phase, want, b.Status.Conditions)
	}
	checkReady(t, b)
	trs := &tektonv1.TaskRunList{}
	if err := kc.List(ctx, trs, client.InNamespace(b.Namespace), client.MatchingLabels{"tekton.dev/pipelineRun": b.Status.LatestRun.Name}); err != nil {
		t.Fatal(err)
	}
	res.taskRuns = trs.Items
	checkPlacement(t, res)
	recordTimings(t, res)
	return res
}

// volumeRoot is the host directory of the build's workspace volume (the
// local cluster's volumes are hostPath).
func volumeRoot(t *testing.T, b *v1alpha1.MultiArchBuild) string {
	t.Helper()
	ctx := context.Background()
	pvc := &corev1.PersistentVolumeClaim{}
	if err := kc.Get(ctx, client.ObjectKey{Namespace: b.Namespace, Name: storage.ClaimName(b)}, pvc); err != nil {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{}
	if err := kc.Get(ctx, client.ObjectKey{Name: pvc.Spec.VolumeName}, pv); err != nil {
		t.Fatal(err)
	}
	if pv.Spec.HostPath == nil {
		t.Fatalf("PV %s is not a hostPath volume", pv.Name)
	}
	return pv.Spec.HostPath.Path
}

// treeState maps each regular file under dir to its size and modification time.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fmt.Sprintf("%d %s", fi.Size(), fi.ModTime().UTC().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fileDigest returns the sha256 of the whole file at path (no leading slash)
// as the image shows it, and the digest of the layer it comes from.
func fileDigest(ctx context.Context, repo string, img *manifest, path string) (sum, layer string, err error) {
	for i := len(img.Layers) - 1; i >= 0; i-- {
		sum, err = func() (string, error) {
			resp, err := regGet(ctx, repo, "blobs", img.Layers[i].Digest)
			if err != nil {
				return "", err
			}
			defer resp.Body.Close()
			var r io.Reader = resp.Body
			if !strings.HasSuffix(img.Layers[i].MediaType, ".tar") {
				gz, err := gzip.NewReader(resp.Body)
				if err != nil {
					return "", fmt.Errorf("layer %s: %w", img.Layers[i].Digest, err)
				}
				defer gz.Close()
				r = gz
			}
			tr := tar.NewReader(r)
			for {
				h, err := tr.Next()
				if err == io.EOF {
					return "", nil
				}
				if err != nil {
					return "", fmt.Errorf("layer %s: %w", img.Layers[i].Digest, err)
				}
				if strings.TrimPrefix(strings.TrimPrefix(h.Name, "./"), "/") != path || h.Typeflag != tar.TypeReg {
					continue
				}
				hs := sha256.New()
				if _, err := io.Copy(hs, tr); err != nil {
					return "", err
				}
				return hex.EncodeToString(hs.Sum(nil)), nil
			}
		}()
		if err != nil || sum != "" {
			return sum, img.Layers[i].Digest, err
		}
	}
	return "", "", fmt.Errorf("/%s is in no layer of the image", path)
}
