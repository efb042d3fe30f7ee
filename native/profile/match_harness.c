// Drives libsift_shim.so's matcher directly (no .NET): 4 threads compare the VNNI (level 1) and AMX
// (level 2) kernels on random sets with forced ties, then times both. Build and run (docs/BENCHMARKS.md):
//   gcc -O2 -o /tmp/match_harness native/profile/match_harness.c -Lnative/build -lsift_shim -lpthread -Wl,-rpath,$PWD/native/build && /tmp/match_harness
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <pthread.h>
int is_sift_match_level(void);
int is_sift_nearest2_many(const unsigned char*, int, const unsigned char*const*, const int*, int, int, int*, int*, int*);
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
#define MAXN 520
static void fill(unsigned char*p,int n,int mode){for(int i=0;i<n*128;i++) p[i]= mode==0? rand()%256 : (rand()%4? rand()%40 : rand()%256);}
static void *thr(void*arg){ // random equality checks in parallel threads
  long bad=0; unsigned seed=(unsigned)(long)arg;
  unsigned char *q=malloc(MAXN*128); unsigned char *cs[8]; int counts[8];
  for(int i=0;i<8;i++) cs[i]=malloc(MAXN*128);
  int *b1=malloc(8*MAXN*4),*i1=malloc(8*MAXN*4),*s1=malloc(8*MAXN*4),*b2=malloc(8*MAXN*4),*i2=malloc(8*MAXN*4),*s2=malloc(8*MAXN*4);
  for(int trial=0;trial<400;trial++){
    srand(seed*1000+trial);
    int nq=rand()%MAXN, n=rand()%8, mode=rand()%3;
    fill(q,nq,mode);
    for(int i=0;i<n;i++){counts[i]=2+rand()%(MAXN-2); fill(cs[i],counts[i],mode);
      if(mode==2){ for(int j=0;j<counts[i];j++) if(rand()%3==0) memcpy(cs[i]+j*128, cs[i]+(rand()%counts[i])*128,128); for(int k=0;k<nq;k++) if(rand()%2) memcpy(q+k*128,cs[i]+(rand()%counts[i])*128,128);} }
    int r1=is_sift_nearest2_many(q,nq,(const unsigned char*const*)cs,counts,n,1,b1,i1,s1), r2=is_sift_nearest2_many(q,nq,(const unsigned char*const*)cs,counts,n,2,b2,i2,s2);
    if(r1||r2){printf("status %d %d\n",r1,r2);exit(1);}
    for(int k=0;k<n*nq;k++) if(b1[k]!=b2[k]||i1[k]!=i2[k]||s1[k]!=s2[k]) bad++;
  }
  return (void*)bad;
}
int main(){
  printf("level %d\n", is_sift_match_level());
  pthread_t t[4]; long total=0;
  for(int i=0;i<4;i++) pthread_create(&t[i],0,thr,(void*)(long)i);
  for(int i=0;i<4;i++){void*r; pthread_join(t[i],&r); total+=(long)r;}
  printf("differing results %ld\n",total);
  int nq=300,n=100; unsigned char *q=malloc(nq*128); fill(q,nq,1);
  unsigned char *cs[100]; int counts[100];
  for(int i=0;i<n;i++){counts[i]=200+rand()%100; cs[i]=malloc(counts[i]*128); fill(cs[i],counts[i],1);}
  int *b=malloc(n*nq*4),*bi=malloc(n*nq*4),*s=malloc(n*nq*4);
  for(int lvl=1;lvl<=2;lvl++) for(int rep=0;rep<3;rep++){ double t0=now(); for(int k=0;k<50;k++) is_sift_nearest2_many(q,nq,(const unsigned char*const*)cs,counts,n,lvl,b,bi,s); printf("level %d: %.2f ms per 300 x 100 sets\n",lvl,(now()-t0)/50*1e3);}
  for(int rep=0;rep<3;rep++){ double t0=now(); for(int k=0;k<2000;k++) is_sift_nearest2_many(q,nq,(const unsigned char*const*)cs,counts,1,2,b,bi,s); printf("level 2 single set: %.1f us\n",(now()-t0)/2000*1e6);}
  return 0;
}
