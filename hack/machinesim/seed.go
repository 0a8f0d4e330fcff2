package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	configv1 "github.com/openshift/api/config/v1"
	machinev1beta1 "github.com/openshift/api/machine/v1beta1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/multiarch-build/multiarch-build-operator/internal/capacity"
	"github.com/multiarch-build/multiarch-build-operator/internal/testenv"
)

// SeedOptions describe the OpenShift/AWS cluster the seed makes the API look like.
type SeedOptions struct {
	StreamJSON     string // coreos-bootimages stream
	Region, Zone   string
	WorkerType     string
	Version        string
	InfraName      string // "" keeps the existing one, else mab-local-<5 random>
	WorkerReplicas int32
}

func seedMain(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	stream := fs.String("stream", "controllers/testdata/capacity/stream.json", "CoreOS stream metadata for coreos-bootimages")
	o := SeedOptions{}
	fs.StringVar(&o.Region, "region", "eu-west-3", "AWS region")
	fs.StringVar(&o.Zone, "zone", "eu-west-3a", "the worker MachineSet's zone")
	fs.StringVar(&o.WorkerType, "worker-type", "m6i.xlarge", "the worker MachineSet's instance type")
	fs.StringVar(&o.Version, "version", "4.21.0", "OpenShift version")
	fs.StringVar(&o.InfraName, "infra-name", "", "infrastructure name (default: keep, else mab-local-<random>)")
	_ = fs.Parse(args)
	o.WorkerReplicas = 1
	b, err := os.ReadFile(*stream)
	if err != nil {
		return err
	}
	o.StreamJSON = string(b)
	c, err := client.New(ctrl.GetConfigOrDie(), client.Options{Scheme: scheme()})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	crds, err := testenv.LoadCRDs(testenv.OpenShiftMachine, testenv.OpenShiftConfig)
	if err != nil {
		return err
	}
	if err := InstallCRDs(ctx, c, crds); err != nil {
		return err
	}
	return Seed(ctx, c, o)
}

const annotationCRDHash = "machinesim.mab.local/crd-sha256"

// InstallCRDs creates or updates crds and waits until they are Established.
func InstallCRDs(ctx context.Context, c client.Client, crds []*apiextensionsv1.CustomResourceDefinition) error {
	for _, crd := range crds {
		raw, _ := json.Marshal(crd)
		sum := sha256.Sum256(raw)
		crd = crd.DeepCopy()
		if crd.Annotations == nil {
			crd.Annotations = map[string]string{}
		}
		crd.Annotations[annotationCRDHash] = hex.EncodeToString(sum[:])
		cur := &apiextensionsv1.CustomResourceDefinition{}
		err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, cur)
		switch {
		case apierrors.IsNotFound(err):
			if err := c.Create(ctx, crd.DeepCopy()); err != nil {
				return err
			}
		case err != nil:
			return err
		case cur.Annotations[annotationCRDHash] == crd.Annotations[annotationCRDHash]:
			// unchanged since the last seed
		default:
			want := crd.DeepCopy()
			want.ResourceVersion = cur.ResourceVersion
			want.Spec.Conversion = cur.Spec.Conversion // the server's default
			if err := c.Update(ctx, want); err != nil {
				return err
			}
		}
	}
	for _, crd := range crds {
		for {
			cur := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: crd.Name}, cur); err != nil {
				return err
			}
			established := false
			for _, cond := range cur.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					established = true
				}
			}
			if established {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("CRD %s not Established: %w", crd.Name, ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func randomSuffix(n int) string {
	const alphabet = "bcdfghjklmnpqrstvwxz2456789"
	b := make([]byte, n)
	for i := range b {
		k, _ := rand.Int(rand.Reader, big.NewInt(int64(len(alphabet))))
		b[i] = alphabet[k.Int64()]
	}
	return string(b)
}

// Seed creates what an OpenShift cluster on AWS has for the Machine API:
// Infrastructure/cluster, ClusterVersion/version (multi-arch payload), the
// coreos-bootimages ConfigMap and one installer-style worker MachineSet.
// Idempotent: existing objects keep their names and the MachineSet its replicas.
func Seed(ctx context.Context, c client.Client, o SeedOptions) error {
	for _, ns := range []string{Namespace, "openshift-config", "openshift-config-managed", capacity.BootImagesNamespace} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	// Infrastructure/cluster
	infra := &configv1.Infrastructure{}
	err := c.Get(ctx, client.ObjectKey{Name: "cluster"}, infra)
	if apierrors.IsNotFound(err) {
		infra = &configv1.Infrastructure{ObjectMeta: metav1.ObjectMeta{Name: "cluster"},
			Spec: configv1.InfrastructureSpec{
				CloudConfig:  configv1.ConfigMapFileReference{Name: ""},
				PlatformSpec: configv1.PlatformSpec{Type: configv1.AWSPlatformType, AWS: &configv1.AWSPlatformSpec{}},
			}}
		if err := c.Create(ctx, infra); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	name := infra.Status.InfrastructureName
	if o.InfraName != "" {
		name = o.InfraName
	}
	if name == "" {
		name = "mab-local-" + randomSuffix(5)
	}
	base := infra.DeepCopy()
	infra.Status = configv1.InfrastructureStatus{
		InfrastructureName:     name,
		Platform:               configv1.AWSPlatformType,
		PlatformStatus:         &configv1.PlatformStatus{Type: configv1.AWSPlatformType, AWS: &configv1.AWSPlatformStatus{Region: o.Region}},
		EtcdDiscoveryDomain:    "",
		APIServerURL:           "https://api.mab-local.example.com:6443",
		APIServerInternalURL:   "https://api-int.mab-local.example.com:6443",
		ControlPlaneTopology:   configv1.HighlyAvailableTopologyMode,
		InfrastructureTopology: configv1.HighlyAvailableTopologyMode,
		CPUPartitioning:        configv1.CPUPartitioningNone,
	}
	if err := c.Status().Patch(ctx, infra, client.MergeFrom(base)); err != nil {
		return fmt.Errorf("Infrastructure status: %w", err)
	}

	// ClusterVersion/version: a multi-architecture payload
	cv := &configv1.ClusterVersion{}
	if err := c.Get(ctx, client.ObjectKey{Name: "version"}, cv); apierrors.IsNotFound(err) {
		id := make([]byte, 16)
		_, _ = rand.Read(id)
		h := hex.EncodeToString(id)
		cv = &configv1.ClusterVersion{ObjectMeta: metav1.ObjectMeta{Name: "version"},
			Spec: configv1.ClusterVersionSpec{
				ClusterID: configv1.ClusterID(h[:8] + "-" + h[8:12] + "-4" + h[13:16] + "-a" + h[17:20] + "-" + h[20:]),
				Channel:   "stable-" + minor(o.Version),
			}}
		if err := c.Create(ctx, cv); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	if cv.Status.Desired.Architecture != configv1.ClusterVersionArchitectureMulti || cv.Status.Desired.Version != o.Version {
		base := cv.DeepCopy()
		digest := sha256.Sum256([]byte(o.Version + "-multi"))
		image := "quay.io/openshift-release-dev/ocp-release@sha256:" + hex.EncodeToString(digest[:])
		now := metav1.Now()
		cv.Status = configv1.ClusterVersionStatus{
			Desired: configv1.Release{Version: o.Version, Image: image, Architecture: configv1.ClusterVersionArchitectureMulti,
				Channels: []string{"candidate-" + minor(o.Version), "fast-" + minor(o.Version), "stable-" + minor(o.Version)}},
			History: []configv1.UpdateHistory{{State: configv1.CompletedUpdate, StartedTime: now, CompletionTime: &now,
				Version: o.Version, Image: image, Verified: false}},
			ObservedGeneration: cv.Generation,
			VersionHash:        "mab-local",
			AvailableUpdates:   []configv1.Release{},
			Capabilities:       configv1.ClusterVersionCapabilitiesStatus{},
			Conditions: []configv1.ClusterOperatorStatusCondition{
				{Type: configv1.OperatorAvailable, Status: configv1.ConditionTrue, LastTransitionTime: now, Message: "Done applying " + o.Version},
				{Type: configv1.OperatorProgressing, Status: configv1.ConditionFalse, LastTransitionTime: now, Message: "Cluster version is " + o.Version},
				{Type: configv1.OperatorDegraded, Status: configv1.ConditionFalse, LastTransitionTime: now},
			},
		}
		if err := c.Status().Patch(ctx, cv, client.MergeFrom(base)); err != nil {
			return fmt.Errorf("ClusterVersion status: %w", err)
		}
	}

	// coreos-bootimages
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: capacity.BootImagesNamespace, Name: capacity.BootImagesConfigMap}}
	want := map[string]string{capacity.BootImagesKey: o.StreamJSON, "releaseVersion": o.Version}
	if err := c.Get(ctx, client.ObjectKeyFromObject(cm), cm); apierrors.IsNotFound(err) {
		cm.Data = want
		if err := c.Create(ctx, cm); err != nil {
			return err
		}
	} else if err != nil {
		return err
	} else if cm.Data[capacity.BootImagesKey] != want[capacity.BootImagesKey] || cm.Data["releaseVersion"] != o.Version {
		cm.Data = want
		if err := c.Update(ctx, cm); err != nil {
			return err
		}
	}

	// the installer's worker MachineSet of the zone
	ms, err := WorkerMachineSet(name, o)
	if err != nil {
		return err
	}
	if err := c.Create(ctx, ms); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return nil
}

// minor: 4.21.0 -> 4.21.
func minor(version string) string {
	if i := strings.LastIndex(version, "."); i > 0 && strings.Count(version, ".") == 2 {
		return version[:i]
	}
	return version
}

// WorkerMachineSet is the worker MachineSet the installer creates for a zone
// (shaped on controllers/testdata/capacity/worker-machineset.yaml and
// installer 4.21's output).
func WorkerMachineSet(infraName string, o SeedOptions) (*machinev1beta1.MachineSet, error) {
	ami, err := capacity.AMI(o.StreamJSON, MachineArch(&machinev1beta1.AWSMachineProviderConfig{InstanceType: o.WorkerType}), o.Region)
	if err != nil {
		return nil, err
	}
	name := infraName + "-worker-" + o.Zone
	pc := machinev1beta1.AWSMachineProviderConfig{
		TypeMeta: metav1.TypeMeta{APIVersion: machinev1beta1.GroupVersion.String(), Kind: "AWSMachineProviderConfig"},
		AMI:      machinev1beta1.AWSResourceReference{ID: ptr.To(ami)},
		BlockDevices: []machinev1beta1.BlockDeviceMappingSpec{{EBS: &machinev1beta1.EBSBlockDeviceSpec{
			Encrypted: ptr.To(true), Iops: ptr.To[int64](0), KMSKey: machinev1beta1.AWSResourceReference{ARN: ptr.To("")},
			VolumeSize: ptr.To[int64](120), VolumeType: ptr.To("gp3")}}},
		CredentialsSecret:  &corev1.LocalObjectReference{Name: "aws-cloud-credentials"},
		DeviceIndex:        0,
		IAMInstanceProfile: &machinev1beta1.AWSResourceReference{ID: ptr.To(infraName + "-worker-profile")},
		InstanceType:       o.WorkerType,
		Placement:          machinev1beta1.Placement{AvailabilityZone: o.Zone, Region: o.Region},
		SecurityGroups: []machinev1beta1.AWSResourceReference{
			{Filters: []machinev1beta1.Filter{{Name: "tag:Name", Values: []string{infraName + "-node"}}}},
			{Filters: []machinev1beta1.Filter{{Name: "tag:Name", Values: []string{infraName + "-lb"}}}},
		},
		Subnet: machinev1beta1.AWSResourceReference{Filters: []machinev1beta1.Filter{{Name: "tag:Name",
			Values: []string{infraName + "-subnet-private-" + o.Zone}}}},
		Tags:           []machinev1beta1.TagSpecification{{Name: "kubernetes.io/cluster/" + infraName, Value: "owned"}},
		UserDataSecret: &corev1.LocalObjectReference{Name: "worker-user-data"},
	}
	raw, err := json.Marshal(pc)
	if err != nil {
		return nil, err
	}
	sel := map[string]string{capacity.LabelCluster: infraName, capacity.LabelMachineSet: name}
	tl := map[string]string{capacity.LabelCluster: infraName, capacity.LabelMachineRole: "worker",
		"machine.openshift.io/cluster-api-machine-type": "worker", capacity.LabelMachineSet: name}
	return &machinev1beta1.MachineSet{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: map[string]string{capacity.LabelCluster: infraName}},
		Spec: machinev1beta1.MachineSetSpec{
			Replicas: ptr.To(o.WorkerReplicas),
			Selector: metav1.LabelSelector{MatchLabels: sel},
			Template: machinev1beta1.MachineTemplateSpec{
				ObjectMeta: machinev1beta1.ObjectMeta{Labels: tl},
				Spec: machinev1beta1.MachineSpec{
					ObjectMeta:   machinev1beta1.ObjectMeta{Labels: map[string]string{capacity.LabelNodeRoleWorker: ""}},
					ProviderSpec: machinev1beta1.ProviderSpec{Value: &runtime.RawExtension{Raw: raw}},
				},
			},
		},
	}, nil
}
